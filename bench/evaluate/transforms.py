"""The copy-detection query set: each photo transformed the ways copies appear in a gallery."""

from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

Transform = Callable[[Image.Image], Image.Image]


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _center_crop(img: Image.Image, area: float) -> Image.Image:
    side = area**0.5
    w, h = img.size
    cw, ch = int(w * side), int(h * side)
    # Off-centre, as a person would crop: keep the upper-left-middle part.
    left, top = int((w - cw) * 0.35), int((h - ch) * 0.4)
    return img.crop((left, top, left + cw, top + ch))


def _thumbnail(img: Image.Image, longest: int) -> Image.Image:
    out = img.copy()
    out.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return out


def _banner(img: Image.Image) -> Image.Image:
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


def _screenshot(img: Image.Image) -> Image.Image:
    """A phone screenshot: the photo scaled into a 1080x1920 canvas with UI bars."""
    canvas = Image.new("RGB", (1080, 1920), (245, 245, 245))
    shown = _thumbnail(img, 1080)
    canvas.paste(shown, ((1080 - shown.width) // 2, (1920 - shown.height) // 2))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 1080, 90), fill=(30, 30, 30))
    draw.rectangle((0, 1780, 1080, 1920), fill=(30, 30, 30))
    return _thumbnail(canvas, 960)


def _border(img: Image.Image) -> Image.Image:
    pad = max(img.size) // 12
    return ImageOps.expand(img, border=pad, fill=(255, 255, 255))


TRANSFORMS: dict[str, Transform] = {
    "jpeg_q20": lambda im: _jpeg(im, 20),
    "thumbnail_256": lambda im: _thumbnail(im, 256),
    "mirror": ImageOps.mirror,
    "rotate_90": lambda im: im.rotate(90, expand=True),
    "rotate_8": lambda im: im.rotate(8, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0)),
    "crop_50": lambda im: _center_crop(im, 0.5),
    "crop_25": lambda im: _center_crop(im, 0.25),
    "crop_50_downscale": lambda im: _thumbnail(_center_crop(im, 0.5), 400),
    "brightness_contrast": lambda im: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(
        0.8
    ),
    "border": _border,
    "text_banner": _banner,
    "screenshot": _screenshot,
    "greyscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
}


def encode_query(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()
