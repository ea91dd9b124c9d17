"""The library's text filter: the images a text search finds, by CLIP (image_text's search by text:
pictures that look like the words) or by OCR (the text written in pictures), as a set of ids the
library's query intersects with its pages.

CLIP always answers its ``k`` nearest pictures, however far, so the filter keeps the best
``LIBRARY_TEXT_HITS`` of them (then shown in date order, like the rest of the library); OCR answers
only pictures whose text matches. The hits of one text are kept for a minute, so scrolling through
filtered pages asks the service once.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.proxy import ServiceClients

#: source -> (service, route)
TEXT_SOURCES = {
    "clip": ("image_text", "/image_text_features_get_similar_images_by_text"),
    "ocr": ("ocr", "/ocr_search_by_text"),
}
MAX_TEXT_CHARS = 1000
CACHE_TTL_S = 60.0
CACHE_ENTRIES = 64


class TextUnavailable(Exception):
    """The service of the text search did not answer (HTTP 503)."""


class TextHits:
    """Ids of the images matching a text, by CLIP or OCR."""

    def __init__(self, clients: ServiceClients, enabled: set[str], hits: int) -> None:
        self.clients = clients
        self.enabled = enabled
        self.hits = hits
        self._cache: OrderedDict[tuple[str, str], tuple[float, tuple[int, ...]]] = OrderedDict()

    def source(self, requested: str | None) -> str:
        """``requested`` (clip or ocr), else CLIP when image_text is enabled, else OCR; ValueError
        (HTTP 422) naming the service that a text filter needs."""
        if requested is not None and requested not in TEXT_SOURCES:
            raise ValueError(f"text_source must be clip or ocr, not {requested!r}")
        for name in [requested] if requested else ["clip", "ocr"]:
            if TEXT_SOURCES[name][0] in self.enabled:
                return name
        needs = TEXT_SOURCES[requested][0] if requested else "image_text or ocr"
        raise ValueError(
            f"the text filter needs the {needs} service, which is not enabled (AMBIENCE_GATEWAY_SERVICES)"
        )

    async def ids(self, text: str, requested: str | None) -> tuple[int, ...]:
        text = text.strip()
        if not 0 < len(text) <= MAX_TEXT_CHARS:
            raise ValueError(f"text must have 1 to {MAX_TEXT_CHARS} characters")
        source = self.source(requested)
        key = (source, text)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_TTL_S:
            return cached[1]
        service, route = TEXT_SOURCES[source]
        result = await self.clients.call(service, route, json={"text": text, "k": self.hits})
        if not result.ok:
            if result.status_code is not None and 400 <= result.status_code < 500:
                raise ValueError(f"{service} refused the text: {result.detail}")
            raise TextUnavailable(f"the text filter's service {service} could not answer: {result.detail}")
        found = tuple(dict.fromkeys(int(hit["image_id"]) for hit in result.body))
        self._cache[key] = (time.monotonic(), found)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return found
