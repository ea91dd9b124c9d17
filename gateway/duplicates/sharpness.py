"""How sharp each image is: the variance of the Laplacian of its thumbnail's grey levels.

A burst's frames differ mostly in motion blur and focus; the blurred frame has less energy at high
spatial frequencies, which the Laplacian measures (the classic focus measure: Pech-Pacheco et al.,
2000). It is computed on the 256-px thumbnail the gateway keeps anyway (gateway/thumbnails.py): a
WebP decode of a few KB and one 3x3 filter, about a millisecond, where the full picture would cost
a decode of megapixels; blur that survives the reduction to a thumbnail is the blur a person sees
when choosing a frame. The value is only comparable between pictures of one scene (a stack's
frames), which is where it is used: the ``sharpness`` keeper rule (gateway/duplicates/keeper.py).

The ``sharpness`` step follows the thumbnail step of every add; a bursts rebuild measures the images
that have a thumbnail and no sharpness yet (imported ones, whose previews were made later).
"""

from __future__ import annotations

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool

from gateway import thumbnails
from gateway.duplicates.alignment import grey_thumbnail
from gateway.steps import AddedImage
from services.common.postgres.database import Cursor, SqlRunner


def laplacian_variance(grey: np.ndarray) -> float:
    """The variance of the 3x3 Laplacian of a grey array (0-255 levels)."""
    return float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=1).var())


class SharpnessStore:
    """The sharpness of each image (``gateway_image_sharpness``), and the step that measures it."""

    name = "sharpness"
    uses_upload = False
    needs_stored = False

    def __init__(self, db: SqlRunner) -> None:
        self.db = db

    def measure(self, image_id: int) -> float | None:
        """Measure and keep the image's sharpness from its thumbnail; None when it has none."""
        thumbnail = thumbnails.get(self.db, image_id)
        if thumbnail is None:
            return None
        value = laplacian_variance(grey_thumbnail(thumbnail.webp))
        self.db.run(
            lambda cur: cur.execute(
                "INSERT INTO gateway_image_sharpness (image_id, sharpness) VALUES (%s, %s)"
                " ON CONFLICT (image_id) DO UPDATE SET sharpness = EXCLUDED.sharpness",
                (image_id, value),
            )
        )
        return value

    def of(self, image_ids: list[int]) -> dict[int, float]:
        def run(cur: Cursor) -> dict[int, float]:
            cur.execute(
                "SELECT image_id, sharpness FROM gateway_image_sharpness WHERE image_id = ANY(%s)",
                (image_ids,),
            )
            return {int(i): float(v) for i, v in cur.fetchall()}

        return self.db.run(run) if image_ids else {}

    def unmeasured(self) -> list[int]:
        """Images with a thumbnail and no sharpness yet, ascending."""

        def run(cur: Cursor) -> set[int]:
            cur.execute("SELECT image_id FROM gateway_image_sharpness")
            return {int(r[0]) for r in cur.fetchall()}

        measured = self.db.run(run)
        return [i for i in thumbnails.ids(self.db) if i not in measured]

    def forget_image(self, image_id: int) -> None:
        self.db.run(
            lambda cur: cur.execute("DELETE FROM gateway_image_sharpness WHERE image_id = %s", (image_id,))
        )

    # -- the step that follows an add ----------------------------------------------------------

    async def run(self, image: AddedImage) -> None:
        # without a thumbnail (its step failed for good, and says so) there is nothing to measure:
        # the sharpness stays unknown, which the keeper rules rank last
        await run_in_threadpool(self.measure, image.image_id)

    async def forget(self, image_id: int) -> None:
        await run_in_threadpool(self.forget_image, image_id)
