"""Copy transforms: the edited copies of a picture a search must see through, and the named sets
built from them (each set is what one test or benchmark measures, so a set never changes silently):

- :data:`LOCAL_FEATURES_COPIES`: the local-features recall set (test and bench);
- :data:`COPY_DETECTION`: the evaluation's copy-detection query set (``python -m bench.evaluate``);
- :func:`variants`: the photo variants of the global-features checks with real weights.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from ambience_support.images import encode

Transform = Callable[[Image.Image], Image.Image]
#: A transform drawing its randomness (a crop's place) from the generator it is given.
RandomTransform = Callable[[Image.Image, np.random.Generator], Image.Image]


# -- the edits ------------------------------------------------------------------------------------------


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """The picture after a round trip through JPEG at ``quality``."""
    return Image.open(io.BytesIO(encode(img.convert("RGB"), quality=quality))).convert("RGB")


def crop(img: Image.Image, area: float, rng: np.random.Generator) -> Image.Image:
    """A random crop keeping ``area`` of the picture (same aspect ratio)."""
    w, h = img.size
    side = math.sqrt(area)
    cw, ch = round(w * side), round(h * side)
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def offcentre_crop(img: Image.Image, area: float) -> Image.Image:
    """A crop keeping ``area`` of the picture, off-centre as a person would crop: the
    upper-left-middle part."""
    side = area**0.5
    w, h = img.size
    cw, ch = int(w * side), int(h * side)
    left, top = int((w - cw) * 0.35), int((h - ch) * 0.4)
    return img.crop((left, top, left + cw, top + ch))


def half(img: Image.Image) -> Image.Image:
    return img.resize((max(1, img.width // 2), max(1, img.height // 2)), Image.Resampling.LANCZOS)


def thumbnail(img: Image.Image, longest: int) -> Image.Image:
    out = img.copy()
    out.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return out


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Rotated counter-clockwise, the canvas grown to hold it all (black corners)."""
    return img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)


def banner(img: Image.Image) -> Image.Image:
    """A black band with text across the bottom."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    band = max(h // 8, 12)
    draw.rectangle((0, h - band, w, h), fill=(0, 0, 0))
    font = ImageFont.load_default(size=max(band * 2 // 3, 10))
    draw.text(
        (band // 2, h - band + band // 6), "Shared via ambience - do not repost", fill="white", font=font
    )
    return out


def screenshot(img: Image.Image) -> Image.Image:
    """A phone screenshot: the photo scaled into a 1080x1920 canvas with UI bars."""
    canvas = Image.new("RGB", (1080, 1920), (245, 245, 245))
    shown = thumbnail(img, 1080)
    canvas.paste(shown, ((1080 - shown.width) // 2, (1920 - shown.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1080, 90), fill=(30, 30, 30))
    draw.rectangle((0, 1780, 1080, 1920), fill=(30, 30, 30))
    return thumbnail(canvas, 960)


def border(img: Image.Image) -> Image.Image:
    pad = max(img.size) // 12
    return ImageOps.expand(img, border=pad, fill=(255, 255, 255))


def brightness_contrast(img: Image.Image) -> Image.Image:
    return ImageEnhance.Contrast(ImageEnhance.Brightness(img).enhance(1.3)).enhance(0.8)


def greyscale(img: Image.Image) -> Image.Image:
    return ImageOps.grayscale(img).convert("RGB")


# -- the sets -------------------------------------------------------------------------------------------

#: The local-features recall set: name -> (transform(img, rng), search with mirrored=1).
LOCAL_FEATURES_COPIES: dict[str, tuple[RandomTransform, bool]] = {
    "crop50": (lambda img, rng: crop(img, 0.5, rng), False),
    "crop25": (lambda img, rng: crop(img, 0.25, rng), False),
    "crop50_jpeg40": (lambda img, rng: jpeg(crop(img, 0.5, rng), 40), False),
    "crop50_half": (lambda img, rng: half(crop(img, 0.5, rng)), False),
    "rotate10": (lambda img, rng: rotate(img, 10), False),
    "mirrored_crop50": (lambda img, rng: ImageOps.mirror(crop(img, 0.5, rng)), True),
}

#: The copy-detection query set of the evaluation: each photo transformed the ways copies appear
#: in a gallery.
COPY_DETECTION: dict[str, Transform] = {
    "jpeg_q20": lambda im: jpeg(im, 20),
    "thumbnail_256": lambda im: thumbnail(im, 256),
    "mirror": ImageOps.mirror,
    "rotate_90": lambda im: im.rotate(90, expand=True),
    "rotate_8": lambda im: rotate(im, 8),
    "crop_50": lambda im: offcentre_crop(im, 0.5),
    "crop_25": lambda im: offcentre_crop(im, 0.25),
    "crop_50_downscale": lambda im: thumbnail(offcentre_crop(im, 0.5), 400),
    "brightness_contrast": brightness_contrast,
    "border": border,
    "text_banner": banner,
    "screenshot": screenshot,
    "greyscale": greyscale,
}


def encode_query(img: Image.Image) -> bytes:
    """A copy-detection query as uploaded: JPEG quality 92."""
    return encode(img.convert("RGB"), quality=92)


#: The photo variants of the global-features checks, in the order :func:`variants` makes them.
VARIANTS = ("jpeg30", "half_size", "crop80", "mirrored")


def variants(img: Image.Image, seed: int) -> dict[str, bytes]:
    """JPEG quality 30, half size, a crop keeping 80% of the area at a random place, mirrored."""
    rgb = img.convert("RGB")
    return {
        "jpeg30": encode(rgb, quality=30),
        "half_size": encode(half(rgb), quality=90),
        "crop80": encode(crop(rgb, 0.8, np.random.default_rng(seed)), quality=90),
        "mirrored": encode(ImageOps.mirror(rgb), quality=90),
    }


def source_bytes(img: Image.Image) -> bytes:
    return encode(img.convert("RGB"), quality=92)
