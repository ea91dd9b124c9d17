"""Pictures with known text for the OCR tests: words rendered in real TrueType fonts, at several
sizes, turned a few degrees, on a panel over a real photograph (or a generated picture when the
photographs are absent)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ambience_support.images import synthetic_image
from ambience_support.photos import PHOTOS, load_rgb, photo_paths

FONT_NAMES = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSans.ttf",
)


def font_dirs() -> list[Path]:
    dirs = [Path("/usr/share/fonts/truetype/dejavu")]
    try:  # matplotlib ships the DejaVu family, so the fonts exist wherever it is installed
        import matplotlib

        dirs.insert(0, Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf")
    except ImportError:
        pass
    return [d for d in dirs if d.is_dir()]


def find_font(name: str) -> Path | None:
    for folder in font_dirs():
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass(frozen=True)
class Sign:
    lines: tuple[str, ...]
    font: str
    size: int
    angle: float
    background: int  # which photograph (index) or generated picture (seed)


def background(index: int, size: tuple[int, int] = (560, 400)) -> Image.Image:
    paths = photo_paths(PHOTOS)
    if not paths:
        return synthetic_image(index, size)
    img = load_rgb(paths[(index * 7) % len(paths)])
    # Cover-crop to the target size.
    scale = max(size[0] / img.width, size[1] / img.height)
    img = img.resize((round(img.width * scale) + 1, round(img.height * scale) + 1), Image.Resampling.LANCZOS)
    left, top = (img.width - size[0]) // 2, (img.height - size[1]) // 2
    return img.crop((left, top, left + size[0], top + size[1]))


def render(sign: Sign) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """The picture and the panel's bounding box (where the text is) in picture pixels."""
    path = find_font(sign.font)
    if path is None:
        raise FileNotFoundError(f"font {sign.font} not found in {font_dirs()}")
    font = ImageFont.truetype(str(path), sign.size)
    pad = sign.size // 2
    boxes = [font.getbbox(line) for line in sign.lines]
    width = max(b[2] - b[0] for b in boxes) + 2 * pad
    line_height = round(sign.size * 1.3)
    height = line_height * len(sign.lines) + 2 * pad
    panel = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(panel)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=pad // 2, fill=(250, 248, 240, 225))
    for i, line in enumerate(sign.lines):
        draw.text((pad, pad + i * line_height), line, font=font, fill=(25, 25, 35, 255))
    panel = panel.rotate(sign.angle, expand=True, resample=Image.Resampling.BICUBIC)
    img = background(sign.background)
    x = max(0, (img.width - panel.width) // 2 - 40)
    y = max(0, (img.height - panel.height) // 3)
    img.paste(panel, (x, y), panel)
    return img, (x, y, x + panel.width, y + panel.height)
