"""Embedded colour profiles converted to sRGB (littleCMS through PIL.ImageCms).

Phones write Display P3 (iPhone HEIC and JPEG), print workflows CMYK with a press profile, cameras
sometimes Adobe RGB: read as if they were sRGB, their colours are off (P3 looks dull, CMYK without its
profile garish). A feature compares colours across images, so every picture is brought into one
space. The transform is built once per profile (cached by its bytes) and applied to the strips the
kit converts anyway (images.convert_reduced), so no full-size copy is made. Profiles that already
are sRGB are skipped (the common case costs nothing); a profile littleCMS cannot read is ignored
rather than refusing the picture.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable

from PIL import Image, ImageCms

log = logging.getLogger("ambience.images")

Transform = Callable[[Image.Image], Image.Image]

#: Modes a profile is applied in, and the mode the transform gives.
_OUT_MODE = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}


def srgb_transform(img: Image.Image) -> Transform | None:
    """A strip transform into sRGB when ``img`` carries a colour profile that is not sRGB."""
    profile = img.info.get("icc_profile")
    if not profile or img.mode not in _OUT_MODE:
        return None
    return _transform(bytes(profile), img.mode)


@functools.lru_cache(maxsize=32)
def _transform(profile: bytes, mode: str) -> Transform | None:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        description = ImageCms.getProfileDescription(source) or ""
        if "srgb" in description.lower().replace(" ", ""):
            return None
        # NOCACHE: littleCMS's one-pixel cache is not safe across threads, and requests share this.
        transform = ImageCms.buildTransform(
            source,
            _SRGB,
            mode,
            _OUT_MODE[mode],
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
            flags=ImageCms.Flags.NOCACHE,
        )
    except Exception as exc:  # a broken or exotic profile: the pixels are still a picture
        log.debug("colour profile ignored: %s", exc)
        return None

    def apply(strip: Image.Image) -> Image.Image:
        if strip.mode != mode:
            return strip  # reduced into another mode (e.g. 16-bit): left as it is
        return ImageCms.applyTransform(strip, transform) or strip

    return apply


_SRGB = ImageCms.createProfile("sRGB")
