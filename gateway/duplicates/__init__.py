"""Duplicate groups: copies of one picture and near shots, as links between images.

- :mod:`.groups`: the groups in memory (connected components of links) and link arithmetic;
- :mod:`.links`: the links and their change log in PostgreSQL, behind :class:`.links.LinkStore`;
- :mod:`.follower`: the groups of each kind kept as the link store has them, across replicas;
- :mod:`.policy`: what links an added image, and the copy checks (colours, exposures);
- :mod:`.exposure`: the exposure rule (two shots are never copies);
- :mod:`.alignment` and :mod:`.crops`: crops of smooth pictures, by aligning thumbnails;
- :mod:`.rebuild`: every link of a kind recomputed from the services, in the background;
- :mod:`.bursts`: stacks, the third kind: a burst's frames, one shot in two formats (RAW+JPEG);
- :mod:`.sharpness`: how sharp each thumbnail is (a stack's cover, a keeper rule);
- :mod:`.decided` and :mod:`.decisions`: a person's decisions (not duplicates, duplicates,
  resolved) and the groups they make of the links, kept in the catalog;
- :mod:`.keeper`: which image of a group to keep, by ordered rules, and why;
- :mod:`.pages`: the groups described, ordered and paged, kept per generation;
- :mod:`.resolve`: keep some, delete the rest everywhere, what the keepers inherit;
- :mod:`.schema`: the tables of the workflow (migration component ``duplicates``);
- :mod:`.service`: :class:`.service.DuplicateGroups`, what the routes and the add path use.

See docs/explore.md for the rules and their measured thresholds.
"""
