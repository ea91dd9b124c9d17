"""Every file a phone or camera writes, read once in the kit for every service.

:mod:`services.common.images` is the one decode path; the format-specific parts live here:

- ``formats``: what a file is, from its magic bytes (ISO-BMFF brands, EBML, RIFF, TIFF-based RAW);
- ``heif``: HEIC/HEIF via pillow-heif, registered with Pillow once (AVIF is Pillow's own);
- ``raw``: camera RAW via LibRaw (rawpy): the embedded preview when large enough, else a half-size
  demosaic;
- ``video``: a representative frame of a video via PyAV, with frame-size, time and packet bounds;
- ``color``: embedded ICC profiles (Display P3, CMYK press profiles, Adobe RGB) converted to sRGB;
- ``metadata``: kind, size as displayed, capture and exposure time, GPS and duration without
  decoding pixels (what the gateway's catalog records);
- ``errors``: :class:`ImageError`, the one failure of every decoder (an HTTP status and a message).
"""
