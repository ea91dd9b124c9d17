"""Candidate voting and geometric verification.

Search = (1) every query descriptor's ``k_clusters`` nearest stored descriptors within a
squared-L2 ``matching_threshold`` vote for their images; (2) only the ``max_candidates`` images
with most votes are verified: SMNN matching (mutual nearest neighbours that also pass the
second-nearest ratio test) and a MAGSAC++ homography; the score is the inlier count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from services.local_features.extraction import ID_SHIFT, Features, decode_record


@dataclass(frozen=True)
class VerifyParams:
    smnn_ratio: float = 0.9
    reprojection_threshold: float = 6.0
    max_iterations: int = 2000
    confidence: float = 0.999
    #: Homographies that shrink/stretch area by more than this factor are treated as degenerate.
    max_area_change: float = 64.0
    #: Query keypoints this close (query pixels) to a stored keypoint's nearest query keypoint are
    #: the same point seen at another pyramid level, not a rival in the reverse ratio test.
    same_point_radius: float = 8.0


def votes_from_hits(distances: np.ndarray, ids: np.ndarray, matching_threshold: float) -> dict[int, int]:
    """Votes per image: how many query descriptors have a neighbour in it within the threshold."""
    valid = (ids >= 0) & (distances <= matching_threshold)
    rows = np.nonzero(valid)[0]
    images = ids[valid] >> ID_SHIFT
    if len(images) == 0:
        return {}
    pairs = np.unique(np.stack([rows.astype(np.int64), images]), axis=1)  # one vote per (query kp, image)
    unique_images, counts = np.unique(pairs[1], return_counts=True)
    return {int(i): int(c) for i, c in zip(unique_images, counts, strict=True)}


def best_candidates(votes: dict[int, int], max_candidates: int) -> list[int]:
    ranked = sorted(votes.items(), key=lambda item: (-item[1], item[0]))
    return [image_id for image_id, _ in ranked[:max_candidates]]


def same_point_mask(query_xy: np.ndarray, same_point_radius: float) -> np.ndarray | None:
    """(nq, nq) True where two query keypoints are within ``same_point_radius`` pixels: one point
    seen at two pyramid levels. Computed once per query, not once per verified candidate (it is
    the largest array of a verification)."""
    if same_point_radius <= 0 or len(query_xy) == 0:
        return None
    xy = query_xy.astype(np.float32)
    return ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2) <= same_point_radius**2


def smnn(
    query: np.ndarray, stored: np.ndarray, ratio: float, same_point: np.ndarray | None = None
) -> np.ndarray:
    """(m, 2) index pairs (query row, stored row): mutual nearest neighbours whose distance is
    below ``ratio`` times the distance to the second nearest (in both directions).

    With ``same_point`` (``same_point_mask`` of the query), the reverse (stored -> query) second
    nearest skips query keypoints at the nearest one's place. A pyramid query holds most points
    twice (once per level, near-identical descriptors); counting the copy as a rival rejected true
    matches and left 25%-area crops 8-9 inliers short of ``min_inliers``."""
    if len(query) < 2 or len(stored) < 2:
        return np.zeros((0, 2), np.int64)
    # Unit rows: squared L2 = 2 - 2 cos.
    d2 = np.maximum(2.0 - 2.0 * (query @ stored.T), 0.0)
    dist = np.sqrt(d2)
    nn12 = dist.argmin(axis=1)
    nn21 = dist.argmin(axis=0)
    rows = np.arange(len(query))
    mutual = nn21[nn12] == rows
    part12 = np.partition(dist, 1, axis=1)[:, :2]
    ratio12 = part12[:, 0] / np.maximum(part12[:, 1], 1e-8)
    if same_point is not None:
        rivals = np.where(same_point[:, nn21], np.inf, dist)  # column j: rivals of stored j's nearest
        ratio21_all = dist.min(axis=0) / np.maximum(rivals.min(axis=0), 1e-8)
    else:
        part21 = np.partition(dist, 1, axis=0)[:2, :]
        ratio21_all = part21[0] / np.maximum(part21[1], 1e-8)
    ratio21 = ratio21_all[nn12]
    keep = mutual & (np.maximum(ratio12, ratio21) <= ratio)
    return np.stack([rows[keep], nn12[keep]], axis=1).astype(np.int64)


def _degenerate(h: np.ndarray | None, max_area_change: float) -> bool:
    if h is None or h.shape != (3, 3) or not np.isfinite(h).all() or abs(h[2, 2]) < 1e-12:
        return True
    h = h / h[2, 2]
    det = float(np.linalg.det(h[:2, :2]))
    # A homography of a real copy preserves orientation (det > 0; mirrored copies are searched
    # as mirrored queries) and does not collapse the picture to a line or a point.
    return not (1.0 / max_area_change <= det <= max_area_change)


def verify(
    query: Features,
    stored: Features,
    params: VerifyParams,
    same_point: np.ndarray | None = None,
    needed: int = 4,
) -> int:
    """Inlier count of the MAGSAC++ homography between SMNN matches (0 when none holds).

    ``same_point``: the query's ``same_point_mask``, when verifying many candidates for one query.
    ``needed``: the inlier count a caller would keep; with fewer SMNN matches than that no
    homography can reach it, so MAGSAC++ is skipped. On an unrelated image it would run all its
    iterations without reaching the confidence and cost most of a verification."""
    if same_point is None:
        same_point = same_point_mask(query.xy, params.same_point_radius)
    pairs = smnn(query.descriptors, stored.descriptors, params.smnn_ratio, same_point)
    if len(pairs) < max(4, needed):
        return 0
    src = query.xy[pairs[:, 0]].reshape(-1, 1, 2)
    dst = stored.xy[pairs[:, 1]].reshape(-1, 1, 2)
    try:
        h, mask = cv2.findHomography(
            src,
            dst,
            cv2.USAC_MAGSAC,
            params.reprojection_threshold,
            maxIters=params.max_iterations,
            confidence=params.confidence,
        )
    except cv2.error:
        return 0
    if mask is None or _degenerate(h, params.max_area_change):
        return 0
    return int(mask.sum())


class DescriptorIndex(Protocol):
    """What the search reads of the index over every stored descriptor (row id: image << ID_SHIFT)."""

    def count(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class MatchParams:
    """The two stages' settings: votes from the ``k_clusters`` nearest descriptors within
    ``matching_threshold``, then the ``max_candidates`` best-voted images verified."""

    k_clusters: int
    matching_threshold: float
    max_candidates: int
    verify: VerifyParams


def inlier_scores(
    index: DescriptorIndex,
    stored_record: Callable[[int], bytes | None],
    queries: list[Features],
    params: MatchParams,
    exclude: int | None = None,
    needed: int = 4,
) -> dict[int, int]:
    """Inlier count per verified image, the best over the query variants (a picture and its mirror);
    images that cannot reach ``needed`` inliers may score 0. ``stored_record``: an image's stored
    record (None when it was deleted meanwhile)."""
    scores: dict[int, int] = {}
    for query in queries:
        if len(query) == 0 or index.count() == 0:
            continue
        distances, ids = index.search(query.descriptors, params.k_clusters)
        votes = votes_from_hits(distances, ids, params.matching_threshold)
        votes.pop(exclude, None)  # type: ignore[arg-type]
        same_point = same_point_mask(query.xy, params.verify.same_point_radius)
        for image_id in best_candidates(votes, params.max_candidates):
            record = stored_record(image_id)
            if record is None:
                continue
            inliers = verify(query, decode_record(record), params.verify, same_point, needed)
            if inliers > scores.get(image_id, 0):
                scores[image_id] = inliers
    return scores
