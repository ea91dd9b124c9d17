"""Searches over the stored faces, plain numpy over a VectorIndex (no HTTP).

Every stored face is one FAISS row with id ``image_id << ID_SHIFT | face`` and the squared L2
distance of the 128-d descriptors; distances reported here are Euclidean (dlib's same-person
threshold is about 0.6). Two searches:

- :func:`nearest_images`: the images holding the faces nearest to any query face, one entry per
  image (its best pair), best first: the standard search routes, whose lists the gateway fuses.
- :func:`nearest_faces`: per query face, its nearest stored faces: the people pages.

Both are k-nearest searches that grow ``k`` until they hold enough distinct images, so their
memory and reply stay bounded however large a threshold (at most ``limit`` entries).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.common.features.index import VectorIndex
from services.faces.extraction import ID_SHIFT

_FACE_MASK = (1 << ID_SHIFT) - 1


def face_row_id(image_id: int, face: int) -> int:
    return (image_id << ID_SHIFT) | face


def split_row_id(row_id: int) -> tuple[int, int]:
    return row_id >> ID_SHIFT, row_id & _FACE_MASK


def euclidean(squared: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum(squared.astype(np.float64), 0.0))


def within(distances: np.ndarray, threshold: float | None) -> np.ndarray:
    """Inclusive at float32 precision: a stored copy at 0.6 matches a threshold of 0.6."""
    if threshold is None:
        return np.ones(distances.shape, bool)
    return distances <= threshold + 1e-6


def nearest_images(
    index: VectorIndex,
    queries: np.ndarray,
    k: int | None,
    threshold: float | None,
    limit: int,
    exclude_image: int | None = None,
) -> list[dict[str, Any]]:
    """``[{"image_id", "distance", "face", "query_face"}]``: the ``k`` images (or every image within
    ``threshold``, at most ``limit``) whose faces are nearest to a query face, best first."""
    total = index.count()
    if total == 0 or len(queries) == 0:
        return []
    wanted = min(k if k is not None else limit, limit)
    asked = min(total, max(2 * wanted, 16))
    while True:
        squared, ids = index.search(queries, asked)
        distances = euclidean(squared)
        best: dict[int, tuple[float, int, int]] = {}
        keep = (ids >= 0) & within(distances, threshold)
        for query_face, column in zip(*np.nonzero(keep), strict=True):
            image_id, face = split_row_id(int(ids[query_face, column]))
            distance = float(distances[query_face, column])
            if image_id != exclude_image and distance < best.get(image_id, (np.inf,))[0]:
                best[image_id] = (distance, face, int(query_face))
        beyond = threshold is not None and bool((~within(distances[:, -1], threshold)).all())
        if len(best) >= wanted or asked >= total or beyond:
            break
        asked = min(total, asked * 4)
    ranked = sorted(best.items(), key=lambda item: (item[1][0], item[0]))[:wanted]
    return [
        {"image_id": image_id, "distance": distance, "face": face, "query_face": query_face}
        for image_id, (distance, face, query_face) in ranked
    ]


def nearest_faces(
    index: VectorIndex,
    queries: np.ndarray,
    k: int | None,
    threshold: float | None,
    limit: int,
    exclude: list[int | None] | None = None,
) -> list[list[dict[str, Any]]]:
    """Per query face, ``[{"image_id", "face", "distance"}]``: its ``k`` nearest stored faces (or
    every face within ``threshold``, at most ``limit``), best first. ``exclude[i]``: a row id the
    i-th query leaves out (the stored face itself)."""
    total = index.count()
    wanted = min(k if k is not None else limit, limit)
    if total == 0 or len(queries) == 0:
        return [[] for _ in range(len(queries))]
    squared, ids = index.search(queries, min(total, wanted + 1))
    distances = euclidean(squared)
    out = []
    for query_face in range(len(queries)):
        skip = exclude[query_face] if exclude else None
        matches = []
        for distance, row_id in zip(distances[query_face], ids[query_face], strict=True):
            if row_id < 0 or row_id == skip or not within(distance, threshold):
                continue
            image_id, face = split_row_id(int(row_id))
            matches.append({"image_id": image_id, "face": face, "distance": float(distance)})
        out.append(matches[:wanted])
    return out
