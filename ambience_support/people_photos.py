"""A few different people every test machine can have, and photos of each made from one portrait.

- ``hopper``: Grace Hopper, the portrait matplotlib ships in its sample data (a US Navy photograph,
  public domain; ambience_support/face_photos.py);
- ``astronaut`` and ``camera``: Eileen Collins and the cameraman of scikit-image's bundled sample
  pictures (``skimage/data/astronaut.png``, ``camera.png``; public domain / scikit-image's own), when
  scikit-image is installed (it is in the test extra).

Measured with the faces service's real weights: the three are 0.67-0.85 apart (dlib's
same-person threshold is 0.6, the grouping's 0.5), and the variants below stay within 0.31 of their
portrait (mirroring is left out: it moves the astronaut's descriptor 0.8 and finds a second face).
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageEnhance

from ambience_support.face_photos import portrait
from ambience_support.images import synthetic_image

#: Variants of a portrait: each a photo of the same person.
VARIANTS = ("original", "cropped", "larger", "jpeg-40")


def skimage_data() -> Path | None:
    try:
        import skimage
    except ImportError:
        return None
    folder = Path(skimage.__file__).parent / "data"
    return folder if (folder / "astronaut.png").exists() else None


def people() -> list[str]:
    """The people this machine has pictures of (hopper always; the others with scikit-image)."""
    return ["hopper", "astronaut", "camera"] if skimage_data() is not None else ["hopper"]


def picture(name: str) -> Image.Image:
    if name == "hopper":
        return portrait()
    folder = skimage_data()
    if folder is None:
        raise LookupError(f"{name} needs scikit-image's sample data (pip install scikit-image)")
    with Image.open(folder / f"{name}.png") as img:
        return img.convert("RGB")


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def variant(name: str, which: str) -> bytes:
    """One photo of ``name``: the portrait itself, cropped, enlarged, or JPEG quality 40."""
    img = picture(name)
    w, h = img.size
    if which == "original":
        return jpeg(img)
    if which == "cropped":
        return jpeg(img.crop((w // 12, h // 12, w - w // 12, h - h // 16)))
    if which == "larger":
        return jpeg(img.resize((int(w * 1.4), int(h * 1.4)), Image.Resampling.BICUBIC))
    if which == "jpeg-40":
        return jpeg(img, 40)
    if which == "brighter":
        return jpeg(ImageEnhance.Brightness(img).enhance(1.25))
    raise ValueError(f"no variant {which!r}")


def together(names: list[str], seed: int = 0) -> bytes:
    """One photo of several people side by side (each portrait at its own size)."""
    shots = [picture(n) for n in names]
    height = max(s.height for s in shots) + 40
    canvas = synthetic_image(seed, (sum(s.width for s in shots) + 20 * (len(shots) + 1), height))
    x = 20
    for shot in shots:
        canvas.paste(shot, (x, 20))
        x += shot.width + 20
    return jpeg(canvas)
