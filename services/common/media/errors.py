"""The one error every decode raises: an HTTP status and a message naming the problem and the format."""

from __future__ import annotations


class ImageError(Exception):
    """An upload that cannot be used as an image. ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
