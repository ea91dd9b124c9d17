"""Duplicate groups: copies of one picture and near shots, as links between images.

- :mod:`.groups`: the groups in memory (connected components of links) and link arithmetic;
- :mod:`.links`: the links and their change log in PostgreSQL, behind :class:`.links.LinkStore`;
- :mod:`.follower`: the groups of each kind kept as the link store has them, across replicas;
- :mod:`.policy`: what links an added image, and the copy checks (colours, exposures);
- :mod:`.exposure`: the exposure rule (two shots are never copies);
- :mod:`.alignment` and :mod:`.crops`: crops of smooth pictures, by aligning thumbnails;
- :mod:`.rebuild`: every link of a kind recomputed from the services, in the background;
- :mod:`.keeper`: which image of a group to keep;
- :mod:`.service`: :class:`.service.DuplicateGroups`, what the routes and the add path use.

See docs/explore.md for the rules and their measured thresholds.
"""
