"""Decode cost per format: ms and peak memory of the kit's one decode path for JPEG, HEIC, AVIF, DNG
(preview vs demosaic) and a video's representative frame; where a video is decoded for the fan-out.

    python -m bench.decode_bench [--small]

One 12 MP photo (the first of ``AMBIENCE_TEST_PHOTOS_FULL``, else a generated picture) is written in
each format here (pillow-heif, Pillow, PiDNG, PyAV), then decoded through
``services.common.images.decode_image`` as a feature asks for it: at 256 px (phash, color, the
models) and in full. Videos are 1080p clips panning across the photo (H.264 with a 1 s keyframe
interval, and HEVC), opening with black frames. Peak memory is the rise of a fresh
process's peak resident set over what it held before the decode: what the decode budget must cover.
The fan-out section compares the two ways a video, HEIC or AVIF can reach N feature services: each
decodes the file, or the gateway decodes it once and sends a JPEG still (gateway/media.py).
``--small``: a 2 MP photo, 720p clips, fewer repeats.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ambience_support import media
from ambience_support.images import encode
from ambience_support.photos import PHOTOS_FULL, photo_paths
from bench.timing import machine, percentiles_ms
from gateway.media import still_for_services
from services.common.images import DecodeLimits, decode_image

#: What most features ask for (phash, color, the model services decode at 224-384 px).
FEATURE_SIDE = 256
#: Feature services of a full install (every one gets each add).
SERVICES = 8
#: Constant bitrates (H.264, HEVC) of a phone's camera app at 30 fps, so the files weigh what a
#: phone's do (an iPhone records 1080p at about 17 and 10 Mbit/s, 720p at about 8 and 5).
PHONE_BIT_RATES = {"1080p": (17_000_000, 10_000_000), "720p": (8_000_000, 5_000_000)}
#: Frames from one keyframe to the next (2 s at 30 fps): 10% of a 10 s clip falls between two.
KEYFRAME_INTERVAL = 60


def log(message: str) -> None:
    print(f"[decode_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def source_photo(small: bool) -> tuple[Image.Image, str]:
    size = (1600, 1200) if small else (4000, 3000)
    paths = photo_paths(PHOTOS_FULL)
    if paths:
        img = ImageOps.exif_transpose(Image.open(paths[0])).convert("RGB")
        img = ImageOps.fit(img, size if img.width >= img.height else size[::-1])
        return img, f"{paths[0].name} cropped to {img.width}x{img.height}"
    return media.scene(1, size).resize(size), f"a generated {size[0]}x{size[1]} picture"


def make_files(small: bool, folder: Path) -> tuple[dict[str, Path], str]:
    """Every format, written once into ``folder`` (encoding HEIC and AVIF at 12 MP takes a while)."""
    photo, described = source_photo(small)
    width, height = photo.size
    files: dict[str, bytes] = {}
    log("encoding JPEG, HEIC, AVIF")
    files["JPEG"] = encode(photo, "JPEG", quality=90)
    files["HEIC (512 px tiles, 320 px thumbnail)"] = media.heic(photo, quality=80, thumbnail=320, tile=512)
    files["AVIF"] = media.avif(photo, quality=70)
    log("writing DNGs")
    files["DNG, full-size preview"] = media.dng(photo, preview=photo)
    files["DNG, no preview (demosaic)"] = media.dng(photo)
    video_size = (1280, 720) if small else (1920, 1080)
    seconds = 4 if small else 10
    log(f"encoding {video_size[0]}x{video_size[1]} clips")
    clip = panning(photo, video_size, seconds * 30, black=5)
    label = f"{video_size[1]}p"
    rates = PHONE_BIT_RATES[label]
    files[f"MP4 H.264 {label}, {seconds} s"] = media.video(
        "mp4", clip, gop=KEYFRAME_INTERVAL, bit_rate=rates[0]
    )
    files[f"MOV HEVC {label}, 2 s"] = hevc(clip[:60], rates[1])
    paths = {}
    for i, (name, data) in enumerate(files.items()):
        path = folder / f"{i}.bin"
        path.write_bytes(data)
        paths[name] = path
    return paths, f"{described} ({width * height / 1e6:.0f} MP)"


def panning(photo: Image.Image, size: tuple[int, int], count: int, black: int) -> list[Image.Image]:
    """A slow pan across ``photo`` (real texture and motion: a phone's bitrate), opening with
    ``black`` black frames."""
    scale = size[1] / photo.height * 1.25
    wide = photo.resize((max(size[0] + count * 2, round(photo.width * scale)), round(photo.height * scale)))
    frames = [Image.new("RGB", size)] * black
    for i in range(count - black):
        left = min(i * 2, wide.width - size[0])
        frames.append(wide.crop((left, 0, left + size[0], size[1])))
    return frames


def hevc(frames: list[Image.Image], bit_rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mov") as container:
        stream = container.add_stream("hevc", rate=30)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.bit_rate = bit_rate
        stream.options = {"preset": "ultrafast", "x265-params": f"keyint={KEYFRAME_INTERVAL}:log-level=error"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def peak_memory_mb(path: Path, draft: int | None) -> float:
    """The decode's rise of the resident set above what the process held before it (imports and
    the file already in): a fresh process, its peak (VmHWM) reset first (Linux ``clear_refs``)."""
    code = (
        "import json\n"
        "from services.common.images import decode_image\n"
        "import av, rawpy, pillow_heif, PIL.AvifImagePlugin\n"
        "from services.common.media import heif\n"
        "heif.register_heif()\n"
        "def status(key):\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith(key):\n"
        "            return int(line.split()[1]) / 1024\n"
        f"data = open({str(path)!r}, 'rb').read()\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = status('VmRSS:')\n"
        f"decode_image(data, 'RGB', draft_size={draft!r})\n"
        "print(json.dumps(status('VmHWM:') - before))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def format_table(paths: dict[str, Path], repeats: int) -> None:
    print("\n### Decode cost per format (`decode_image`, RGB)\n")
    print(
        f"| file | size | ms at {FEATURE_SIDE} px (p50) | ms in full (p50) | full vs JPEG | "
        f"peak memory at {FEATURE_SIDE} px | peak memory in full |"
    )
    print("|---|---|---|---|---|---|---|")
    jpeg_full = None
    for name, path in paths.items():
        data = path.read_bytes()
        small = percentiles_ms(
            lambda data=data: decode_image(data, "RGB", draft_size=FEATURE_SIDE), repeats, 1
        )
        full = percentiles_ms(lambda data=data: decode_image(data, "RGB"), repeats, 1)
        jpeg_full = jpeg_full or full["p50"]
        mem_small, mem_full = peak_memory_mb(path, FEATURE_SIDE), peak_memory_mb(path, None)
        decoded = decode_image(data, "RGB")
        print(
            f"| {name} | {len(data) / 1e6:.2f} MB, {decoded.full_size[0]}x{decoded.full_size[1]} | "
            f"{small['p50']:.0f} | {full['p50']:.0f} | {full['p50'] / jpeg_full:.2f} | "
            f"{mem_small:.0f} MB | {mem_full:.0f} MB |"
        )
        log(f"{name}: {small['p50']:.0f} / {full['p50']:.0f} ms")


def frame_strategies(path: Path, repeats: int) -> None:
    """Which frame stands for a video, and what finding it costs."""
    import av

    from services.common.media.video import REPRESENTATIVE_AT

    data = path.read_bytes()

    def first_frame() -> Image.Image:
        with av.open(io.BytesIO(data)) as container:
            return next(container.decode(video=0)).to_image()

    def exact_frame() -> Image.Image:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            target = REPRESENTATIVE_AT * container.duration / 1e6
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time >= target:
                    return frame.to_image()
        raise RuntimeError("no frame")

    def brightness(img: Image.Image) -> float:
        return float(np.asarray(img.convert("L")).mean())

    kit = lambda: decode_image(data, "RGB").image  # noqa: E731
    print(f"\n### A video's representative frame ({len(data) / 1e6:.1f} MB, opening with 5 black frames)\n")
    print("| frame | ms (p50) | mean luma of the frame |")
    print("|---|---|---|")
    rows: list[tuple[str, Callable[[], Image.Image]]] = [
        ("the first frame", first_frame),
        (f"keyframe at or before {REPRESENTATIVE_AT:.0%} of the duration, past blank frames (ours)", kit),
        (f"the exact frame at {REPRESENTATIVE_AT:.0%} (decode forward from the keyframe)", exact_frame),
    ]
    for label, fn in rows:
        cost = percentiles_ms(fn, repeats, 1)
        print(f"| {label} | {cost['p50']:.0f} | {brightness(fn()):.0f} |")


def fan_out(paths: dict[str, Path], repeats: int) -> None:
    print(
        f"\n### An upload through the gateway: decoded by each of {SERVICES} services, or once into a still\n"
    )
    print(
        "| upload | each service decodes the file: ms per service | gateway makes the still: ms once | "
        "each service decodes the still: ms | total CPU ms, file / still | bytes sent, file / still |"
    )
    print("|---|---|---|---|---|---|")
    limits = DecodeLimits()
    for name, path in paths.items():
        data = path.read_bytes()
        still = still_for_services(data, limits)
        if still is None:
            continue
        per_file = percentiles_ms(
            lambda data=data: decode_image(data, "L", draft_size=FEATURE_SIDE), repeats, 1
        )
        once = percentiles_ms(lambda data=data: still_for_services(data, limits), repeats, 1)
        per_still = percentiles_ms(lambda s=still: decode_image(s, "L", draft_size=FEATURE_SIDE), repeats, 1)
        total_file = SERVICES * per_file["p50"]
        total_still = once["p50"] + SERVICES * per_still["p50"]
        print(
            f"| {name} | {per_file['p50']:.0f} | {once['p50']:.0f} | {per_still['p50']:.1f} | "
            f"{total_file:.0f} / {total_still:.0f} | {SERVICES * len(data) / 1e6:.1f} MB / "
            f"{SERVICES * len(still) / 1e6:.1f} MB |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="a 2 MP photo, 720p clips, fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.small else 7
    with tempfile.TemporaryDirectory() as tmp:
        paths, described = make_files(args.small, Path(tmp))
        print(f"Photo: {described}. Machine: {machine()}.")
        format_table(paths, repeats)
        video = next(p for name, p in paths.items() if name.startswith("MP4"))
        frame_strategies(video, repeats)
        fan_out(paths, repeats)
    print(
        "\nPeak memory: the decode's own, in a fresh process (peak RSS during the decode minus the RSS "
        "before it). Total CPU ms: without a still each service decodes the file (at 256 px); with one "
        "the gateway decodes it once in full and encodes the JPEG, then each service decodes the JPEG."
    )


if __name__ == "__main__":
    main()
