"""The standard-route contract (docs/api.md) every feature service must honour.

A service's test module subclasses :class:`StandardRoutesContract`, sets ``store_route`` and
``search_route`` and provides a ``client`` fixture (an httpx-compatible client of a running app
with an empty collection). The tests add their own images with ids >= 1000.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from ambience_support.bad_uploads import bad_uploads
from ambience_support.images import encode, synthetic_image


class StandardRoutesContract:
    store_route: ClassVar[str]
    search_route: ClassVar[str]
    #: Some services (local features) need texture; the contract images must be findable.
    image_size: ClassVar[tuple[int, int]] = (320, 240)

    def image(self, seed: int) -> Image.Image:
        return synthetic_image(seed, self.image_size)

    # -- helpers --------------------------------------------------------------------------------

    def add(self, client: Any, image_id: Any, data: bytes, name: str = "photo.jpg") -> Any:
        return client.post(
            f"/calculate_{self.store_route}", files={"image": (name, data)}, data={"image_id": str(image_id)}
        )

    def by_image(self, client: Any, data: bytes, **form: Any) -> Any:
        return client.post(
            f"/{self.search_route}_get_similar_images_by_image_buffer",
            files={"image": ("q.jpg", data)},
            data={k: str(v) for k, v in form.items()},
        )

    def by_id(self, client: Any, **body: Any) -> Any:
        return client.post(f"/{self.search_route}_get_similar_images_by_id", json=body)

    def assert_alive(self, client: Any) -> None:
        assert client.get("/health").status_code == 200

    # -- tests ----------------------------------------------------------------------------------

    def test_add_search_delete_roundtrip(self, client: Any) -> None:
        data = encode(self.image(1))
        assert self.add(client, 1001, data).json() == {"image_id": 1001}
        assert self.add(client, 1001, data).status_code == 409
        hits = self.by_image(client, data, k=5).json()
        assert hits[0]["image_id"] == 1001
        hits = self.by_id(client, image_id=1001, k=5).json()
        assert hits[0]["image_id"] == 1001
        assert client.post(f"/delete_{self.store_route}", json={"image_id": 1001}).json() == {
            "image_id": 1001,
            "deleted": True,
        }
        assert self.by_id(client, image_id=1001, k=5).status_code == 404
        assert client.post(f"/delete_{self.store_route}", json={"image_id": 1001}).json()["deleted"] is False
        assert all(h["image_id"] != 1001 for h in self.by_image(client, data, k=5).json())

    def test_stored_ids_come_in_pages(self, client: Any) -> None:
        for image_id in (1003, 1001, 1002):
            assert self.add(client, image_id, encode(self.image(image_id))).status_code == 200
        pages, after = [], None
        while True:
            reply = client.post("/stored_ids", json={"after": after, "limit": 2}).json()
            assert reply["count"] == 3
            pages.append(reply["image_ids"])
            if len(reply["image_ids"]) < 2:
                break
            after = reply["image_ids"][-1]
        assert pages == [[1001, 1002], [1003]]
        assert client.post("/stored_ids", json={}).json() == {"image_ids": [1001, 1002, 1003], "count": 3}
        # a change is seen at once (the sorted ids are kept per store generation)
        assert self.add(client, 1000, encode(self.image(1000))).status_code == 200
        assert client.post("/stored_ids", json={"limit": 2}).json() == {"image_ids": [1000, 1001], "count": 4}
        for body in ({"limit": 0}, {"limit": 100_001}, {"after": -1}, {"after": 1, "limit": 2, "k": 3}):
            assert client.post("/stored_ids", json=body).status_code == 422, body

    def test_k_is_capped_and_never_pads(self, client: Any) -> None:
        for i in range(3):
            assert self.add(client, 1100 + i, encode(self.image(100 + i))).status_code == 200
        hits = self.by_image(client, encode(self.image(100)), k=1000).json()
        ids = [h["image_id"] for h in hits]
        assert -1 not in ids
        assert len(ids) == len(set(ids))
        assert 1100 in ids

    @pytest.mark.parametrize(("label", "payload", "status"), bad_uploads())
    def test_bad_images_are_4xx(self, client: Any, label: str, payload: bytes, status: int) -> None:
        r = self.add(client, 1200, payload)
        assert r.status_code == status, (label, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
        r = self.by_image(client, payload, k=1)
        assert r.status_code == status, (label, r.text)
        self.assert_alive(client)

    def test_truncated_jpeg_is_422(self, client: Any) -> None:
        data = encode(self.image(3))
        r = self.add(client, 1201, data[: len(data) // 2])
        assert r.status_code == 422 and "truncated" in r.json()["detail"]
        self.assert_alive(client)

    @pytest.mark.parametrize(
        ("image_id", "why"),
        [
            (None, "missing"),
            (-1, "negative"),
            ("abc", "not an integer"),
            ("1.5", "not an integer"),
            (2**64, "too large"),
        ],
    )
    def test_bad_image_ids_are_422(self, client: Any, image_id: Any, why: str) -> None:
        data = encode(self.image(4))
        if image_id is None:
            r = client.post(f"/calculate_{self.store_route}", files={"image": ("a.jpg", data)})
        else:
            r = self.add(client, image_id, data)
        assert r.status_code == 422, why
        assert "image_id" in r.text
        self.assert_alive(client)

    @pytest.mark.parametrize(
        "params", [{"k": 3, "distance_threshold": 10}, {}, {"k": 0}, {"k": -2}, {"distance_threshold": -1}]
    )
    def test_bad_search_params_are_422(self, client: Any, params: dict[str, Any]) -> None:
        self.add(client, 1300, encode(self.image(5)))
        assert self.by_image(client, encode(self.image(5)), **params).status_code == 422
        assert self.by_id(client, image_id=1300, **params).status_code == 422
        self.assert_alive(client)

    def test_unknown_id_is_404(self, client: Any) -> None:
        r = self.by_id(client, image_id=987654321, k=3)
        assert r.status_code == 404 and "987654321" in r.json()["detail"]

    def test_unusual_but_valid_images_are_accepted(self, client: Any) -> None:
        base = self.image(6)
        cmyk = encode(base.convert("CMYK"), "JPEG", quality=95)
        rgb16 = np.asarray(base.convert("L"), dtype=np.uint16) * 257
        png16 = encode(Image.fromarray(rgb16), "PNG")
        frames = [base, self.image(7), self.image(8)]
        gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        rgba = base.copy()
        rgba.putalpha(255)
        assert self.add(client, 1499, encode(self.image(9))).status_code == 200  # an unrelated picture
        for i, data in enumerate(
            [
                cmyk,
                png16,
                gif,
                encode(rgba, "PNG"),
                encode(base, "WEBP"),
                encode(base, "BMP"),
                encode(base, "TIFF"),
            ]
        ):
            r = self.add(client, 1400 + i, data)
            assert r.status_code == 200, (i, r.text)
        # The CMYK copy and the animated GIF's first frame rank above the unrelated picture.
        hits = [h["image_id"] for h in self.by_image(client, encode(base), k=8).json()]
        assert hits.index(1400) < hits.index(1499)
        assert hits.index(1402) < hits.index(1499)
        self.assert_alive(client)

    def test_info_routes(self, client: Any) -> None:
        assert client.get("/health").json()["status"] == "ok"
        stats = client.get("/stats").json()
        assert {"count", "index", "store"} <= set(stats)
        text = client.get("/metrics").text
        assert "ambience_requests_total" in text
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200


def add_synthetic_then_search(
    client: Any, store: str, search: str, count: int, query: int
) -> list[dict[str, Any]]:
    """Add generated pictures 0..count-1 under ids 1..count through ``/calculate_<store>`` of the
    service ``client`` reaches, then search by picture ``query``: the hits of ``/<search>``."""
    for i in range(count):
        reply = client.post(
            f"/calculate_{store}",
            files={"image": ("a.jpg", encode(synthetic_image(i)))},
            data={"image_id": str(i + 1)},
        )
        assert reply.status_code == 200, reply.text
    return client.post(
        f"/{search}", files={"image": ("q.jpg", encode(synthetic_image(query)))}, data={"k": "2"}
    ).json()
