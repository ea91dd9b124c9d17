"""The gateway's routes by concern, each module's ``add_routes(app, ...)`` puts its routes
on the app, over the objects they need:

- ``writes``: fan-out add and delete, the catalog's view (:class:`gateway.writer.FanOutWriter`);
- ``search``: ``/reverse_search`` (:class:`gateway.reverse_search.ReverseSearch`);
- ``explore``: ``/moments``, ``/map`` (:class:`gateway.explore.Explorer`), ``/image_info``;
- ``duplicates``: ``/duplicate_groups`` and its rebuild
  (:class:`gateway.duplicates.service.DuplicateGroups`);
- ``thumbnails``: the previews of the page and their backfill;
- ``health``: ``/health`` and ``/metrics``;
- ``passthrough``: every service route by name, streamed to its service.

``uploads.held_image`` is the one way a route reads an uploaded image (and holds it within the
in-flight budget).
"""
