"""Test helpers shared by every service's tests: real pictures, generated pictures, real servers."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(os.environ.get("AMBIENCE_TEST_PHOTOS", REPO.parent / "shared" / "photos"))
PHOTOS_FULL = Path(os.environ.get("AMBIENCE_TEST_PHOTOS_FULL", REPO.parent / "shared" / "photos-full"))


def photo_paths(folder: Path = PHOTOS, limit: int | None = None) -> list[Path]:
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    return paths[:limit] if limit else paths


def encode(img: Image.Image, fmt: str = "JPEG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG" and img.mode not in ("RGB", "L", "CMYK"):
        img = img.convert("RGB")
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def synthetic_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth random picture (blobs of colour), different for every seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.1, 0.5) * max(w, h)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(0, 255, 3)
    img = 255 * img / img.max()
    return Image.fromarray(img.astype(np.uint8), "RGB")


def load_rgb(path: Path) -> Image.Image:
    img = Image.open(path)
    img = ImageOps.exif_transpose(img) or img
    return img.convert("RGB")


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(b"\x00" * (width + 1) * 16, 9)  # a few rows; the rest is never read
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def bad_uploads() -> list[tuple[str, bytes, int]]:
    """(label, upload bytes, expected status) that every image route must refuse with a clear 4xx."""
    return [
        ("empty upload", b"", 422),
        ("text file named .jpg", b"this is not an image\n" * 10, 422),
        ("1x1 image", encode(Image.new("RGB", (1, 1), "red"), "PNG"), 422),
        ("decompression bomb", png_bomb(), 413),
        ("truncated JPEG", encode(synthetic_image(1))[:600], 422),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """A service running as a real process (``python -m module``) on a free port."""

    def __init__(self, module: str, env_prefix: str, data_dir: Path, extra_env: dict[str, str] | None = None):
        self.module = module
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            f"{env_prefix}PORT": str(self.port),
            f"{env_prefix}DATA_DIR": str(data_dir),
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{module}.{self.port}.log"

    def start(self, timeout: float = 60) -> ServiceProcess:
        logf = open(self.log, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self.env, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        # One client for every poll: a new one per call (httpx.get) builds an SSL context each time,
        # ~20 ms of CPU per poll that competes with the starting service.
        with httpx.Client(timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.module} exited with {self.proc.returncode}:\n{self.log.read_text()}"
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise TimeoutError(f"{self.module} did not become healthy:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextmanager
def running_service(module: str, env_prefix: str, data_dir: Path, **kw: object) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(module, env_prefix, data_dir, **kw).start()  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        svc.stop()
