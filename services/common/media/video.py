"""Videos (MP4, MOV, M4V, 3GP, WebM, MKV, AVI) through PyAV (FFmpeg): one representative frame, and
the container's metadata without decoding anything.

The frame: the keyframe at or before 10% of the duration (past the black or fading first frames
most clips open with, and only one frame to decode: the seek lands on a keyframe); when that frame
is blank (nearly black or flat) the following frames are decoded until one is not. A video of
unknown duration starts at its first frame. The frame is turned as the container's display matrix
says (phones record portrait video as rotated landscape).

Bounds, so a huge, endless or malformed file ends in a clear 4xx instead of a hang or an OOM:

- frame size: the stream's declared size is checked against the pixel limit (and
  :data:`MAX_FRAME_PIXELS`) before any decoding (413), the decoder itself refuses larger frames
  (FFmpeg's ``max_pixels``), and the decoder's memory is reserved in the decode budget first;
- time: opening, probing, seeking and decoding together get ``timeout_s`` (FFmpeg's interrupt
  callback stops a read that blocks; the packet loop checks the clock) -> 422;
- work: at most :data:`MAX_PACKETS` packets are read and :data:`MAX_BAD_PACKETS` undecodable
  ones tolerated while looking for the frame -> 422.
"""

from __future__ import annotations

import io
import math
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from services.common.media.errors import ImageError

#: Where the representative frame is looked for, as a fraction of the duration.
REPRESENTATIVE_AT = 0.1
#: Larger than any camera's video (8K UHD is 7680x4320); a stream declaring more is refused.
MAX_FRAME_PIXELS = 8192 * 4352
#: Packets read while looking for the frame (a 60 fps stream with a 10 s keyframe interval and its
#: audio interleaved needs about 1,500 from a keyframe to the next).
MAX_PACKETS = 3000
#: Packets the decoder may refuse before the file is called corrupt.
MAX_BAD_PACKETS = 64
#: Blank frames decoded past before the last one is taken as it is.
MAX_BLANK_FRAMES = 90
#: Decoder memory per frame pixel, reserved in the decode budget: reference frames (YUV 4:2:0 at
#: 1.5 B/px; H.264 and HEVC keep up to 16 at small sizes, 6 at 4K) plus the RGB frame and its copy.
#: Measured at 1080p (bench/decode_bench.py): 19 B/px for H.264, 29 for HEVC.
BYTES_PER_PIXEL = 32
#: A frame is blank below this mean luma (black) or this luma spread (one flat colour).
BLANK_MEAN, BLANK_STD = 16.0, 3.0
#: Quarter turns counter-clockwise (FFmpeg's display rotation) as a transpose.
_TURN = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}
_ISO6709 = re.compile(r"([+-]\d{1,3}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)")
_LOCATION_KEYS = ("com.apple.quicktime.location.ISO6709", "location", "location-eng")
#: Camera-local creation times (with their offset) before the container's UTC ``creation_time``.
_LOCAL_TIME_KEYS = ("com.apple.quicktime.creationdate", "date", "DATE_RECORDED")


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - a base dependency
        raise ImageError(415, "video decoding needs the av (PyAV) package") from None
    return av


@dataclass(frozen=True)
class VideoInfo:
    """A video's container metadata. ``width`` and ``height`` as displayed (rotation applied);
    ``created_at`` naive: camera-local wall-clock time when ``created_local``, else UTC."""

    format: str
    codec: str
    width: int
    height: int
    duration_s: float | None
    created_at: datetime | None
    created_local: bool
    gps: tuple[float, float] | None


class VideoFile:
    """An opened video: container probed, first video stream chosen and its size checked. A
    context manager (closing frees FFmpeg's buffers at once)."""

    def __init__(self, data: bytes, fmt: str, *, max_pixels: int, min_side: int, timeout_s: float) -> None:
        self.fmt = fmt
        self.data = data
        self.container: Any = None
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.max_pixels = min(max_pixels, MAX_FRAME_PIXELS)
        self._guard = {"max_pixels": str(self.max_pixels)}
        self._open()
        try:
            ctx = self.stream.codec_context
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            if width * height > self.max_pixels:
                raise ImageError(
                    413,
                    f"{fmt} video frames are {width}x{height} = {width * height} pixels, more than the "
                    f"limit of {self.max_pixels}",
                )
            if width and height and min(width, height) < min_side:
                raise ImageError(
                    422, f"{fmt} video is {width}x{height}; each side must be at least {min_side} pixels"
                )
            self.coded_size = (width, height)
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        """Open (or open again: a failed seek may leave the demuxer anywhere) the container and pick
        its first video stream, the decoder refusing frames past the pixel limit."""
        av = _av()
        self.close()
        timeout = max(0.001, self.deadline - time.monotonic())
        try:
            self.container = av.open(
                io.BytesIO(self.data), "r", timeout=(timeout, timeout), options=self._guard
            )
        except av.error.ExitError:
            raise self._too_slow("opening") from None
        except av.error.FFmpegError as exc:
            raise ImageError(422, f"corrupt or truncated {self.fmt} video: {_reason(exc)}") from None
        except Exception as exc:
            raise ImageError(422, f"cannot read {self.fmt} video: {_reason(exc)}") from None
        if not self.container.streams.video:
            self.close()
            raise ImageError(422, f"{self.fmt} file has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.codec_context.options = self._guard

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        container = self.container
        if container is not None:
            container.close()
            self.container = None

    def _too_slow(self, doing: str) -> ImageError:
        return ImageError(
            422, f"{self.fmt} video: gave up {doing} after the time limit of {self.timeout_s:g} s"
        )

    @property
    def duration_s(self) -> float | None:
        if self.container.duration and self.container.duration > 0:
            return float(self.container.duration) / 1_000_000
        stream = self.stream
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
            return seconds if seconds > 0 else None
        return None

    def decode_cost(self) -> int:
        width, height = self.coded_size
        pixels = width * height if width and height else self.max_pixels
        return int(pixels * BYTES_PER_PIXEL)

    def info(self) -> VideoInfo:
        metadata = {**dict(self.stream.metadata), **dict(self.container.metadata)}
        created, local = creation_time(metadata)
        width, height = self.coded_size
        if container_rotation(self.data) in (90, 270):
            width, height = height, width
        return VideoInfo(
            format=self.fmt,
            codec=self.stream.codec_context.name,
            width=width,
            height=height,
            duration_s=self.duration_s,
            created_at=created,
            created_local=local,
            gps=location(metadata),
        )

    # -- the representative frame ---------------------------------------------------------------

    def representative_frame(self) -> Image.Image:
        """The frame that stands for the video, as an RGB image turned for display."""
        av = _av()
        duration = self.duration_s
        target = REPRESENTATIVE_AT * duration if duration else 0.0
        try:
            frame = None
            if target > 0 and self._seek(target):
                frame = self._first_good_frame()
                if frame is None:  # nothing after the seek (a truncated or odd index): from the start
                    self._open()
            elif target > 0:
                self._open()
            if frame is None:
                frame = self._first_good_frame()
            if frame is None:
                unknown = "" if all(self.coded_size) else " (its frame size is unreadable or past the limit)"
                raise ImageError(422, f"corrupt or truncated {self.fmt} video: no decodable frame{unknown}")
            image = frame.to_image()
            rotation = int(getattr(frame, "rotation", 0) or 0)
        except av.error.ExitError:
            raise self._too_slow("decoding") from None
        except ImageError:
            raise
        except MemoryError:
            raise ImageError(413, f"{self.fmt} video frame too large to decode") from None
        except Exception as exc:
            raise ImageError(422, f"corrupt or truncated {self.fmt} video: {_reason(exc)}") from None
        turn = _TURN.get(rotation % 360)
        return image.transpose(turn) if turn is not None else image

    def _seek(self, seconds: float) -> bool:
        """To the keyframe at or before ``seconds``; False when the container cannot seek."""
        av = _av()
        if not self.stream.time_base:
            return False
        try:
            self.container.seek(int(seconds / self.stream.time_base), stream=self.stream, backward=True)
        except av.error.ExitError:
            raise
        except av.error.FFmpegError:
            return False
        return True

    def _first_good_frame(self) -> Any:
        """The first frame from here that is not blank (the last blank one when every frame within
        the bounds is blank), or None."""
        blank, last = 0, None
        for frame in self._frames():
            if blank < MAX_BLANK_FRAMES and is_blank(frame):
                blank, last = blank + 1, frame
                continue
            return frame
        return last

    def _frames(self) -> Iterator[Any]:
        av = _av()
        bad = 0
        for count, packet in enumerate(self.container.demux(self.stream)):
            if time.monotonic() > self.deadline:
                raise self._too_slow("looking for a frame")
            if count >= MAX_PACKETS:
                raise ImageError(
                    422, f"{self.fmt} video: no decodable frame in the first {MAX_PACKETS} packets"
                )
            try:
                frames = packet.decode()
            except av.error.ExitError:
                raise
            except av.error.FFmpegError as exc:
                bad += 1
                if bad > MAX_BAD_PACKETS:
                    raise ImageError(
                        422, f"corrupt {self.fmt} video: {bad} packets failed to decode ({_reason(exc)})"
                    ) from None
                continue
            yield from frames


def is_blank(frame: Any) -> bool:
    """Nearly black or one flat colour: judged on a 64 px grey copy (cheap whatever the frame size)."""
    height = max(1, round(64 * frame.height / max(1, frame.width)))
    small = frame.reformat(width=64, height=height, format="gray")
    luma = small.to_ndarray().astype(np.float32)
    return float(luma.mean()) < BLANK_MEAN or float(luma.std()) < BLANK_STD


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or (exc.args[0] if exc.args else "")
    return str(text) or type(exc).__name__


# -- metadata -----------------------------------------------------------------------------------


def creation_time(metadata: dict[str, str]) -> tuple[datetime | None, bool]:
    """(when, local): the camera's local wall-clock time where the container keeps one with its
    offset (Apple's ``com.apple.quicktime.creationdate``), else the container's UTC
    ``creation_time``; naive either way. Zero dates (a camera without a clock) are None."""
    for key in _LOCAL_TIME_KEYS:
        when = _parse_time(metadata.get(key))
        if when is not None:
            return when.replace(tzinfo=None), True
    when = _parse_time(metadata.get("creation_time"))
    if when is None:
        return None, False
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.replace(tzinfo=None), False


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    text = text.strip().replace(" ", "T", 1)
    text = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", text)  # +0200 -> +02:00
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.year >= 1971 else None


def location(metadata: dict[str, str]) -> tuple[float, float] | None:
    """(latitude, longitude) from an ISO 6709 string (``+48.8577+002.2945+035.000/``)."""
    for key in _LOCATION_KEYS:
        match = _ISO6709.match(metadata.get(key) or "")
        if match:
            lat, lon = float(match.group(1)), float(match.group(2))
            if -90 <= lat <= 90 and -180 <= lon <= 180 and (lat, lon) != (0.0, 0.0):
                return lat, lon
    return None


def container_rotation(data: bytes) -> int:
    """The display rotation (degrees counter-clockwise, 0/90/180/270) of an MP4/MOV's first rotated
    track, from its ``tkhd`` matrix: known without decoding a frame (FFmpeg reads the same)."""
    start = 0
    for _ in range(16):
        at = data.find(b"tkhd", start)
        if at < 4:
            return 0
        start = at + 4
        version = data[at + 4] if at + 4 < len(data) else 0
        size = int.from_bytes(data[at - 4 : at], "big")
        if size != (104 if version == 1 else 92) or at + size - 4 > len(data):
            continue
        matrix = at + 8 + (32 if version == 1 else 20) + 16
        a, b = struct.unpack_from(">ii", data, matrix)
        if a == 1 << 16 and b == 0:
            continue  # identity: an unrotated (or audio) track
        angle = -math.degrees(math.atan2(b, a))
        return round(angle / 90) * 90 % 360
    return 0


def probe(data: bytes, fmt: str, *, timeout_s: float, max_pixels: int = MAX_FRAME_PIXELS) -> VideoInfo:
    """The metadata of a video without decoding a frame."""
    with VideoFile(data, fmt, max_pixels=max_pixels, min_side=1, timeout_s=timeout_s) as video:
        return video.info()
