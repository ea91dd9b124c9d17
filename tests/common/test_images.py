from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ambience_support.images import encode, png_bomb, synthetic_image
from services.common.images import DecodeLimits, ImageError, decode_image


def test_exif_orientation_is_applied() -> None:
    img = synthetic_image(1, (200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(encode(img, "JPEG", exif=exif.tobytes()))
    assert decoded.image.size == (100, 200)


def test_draft_decodes_large_jpegs_smaller_but_not_below_the_asked_size() -> None:
    data = encode(synthetic_image(2, (2400, 1600)), "JPEG")
    small = decode_image(data, "L", draft_size=256).image
    assert 256 <= min(small.size) < 800
    assert small.size[0] / small.size[1] == pytest.approx(1.5, rel=0.01)
    assert decode_image(data, "L").image.size == (2400, 1600)


def test_16_bit_grey_is_scaled_not_clipped() -> None:
    ramp = (np.linspace(0, 65535, 256, dtype=np.float64)[None, :].repeat(16, 0)).astype(np.uint16)
    out = np.asarray(decode_image(encode(Image.fromarray(ramp), "PNG"), "L").image)
    assert out[0, 0] == 0 and out[0, -1] == 255 and 120 < out[0, 128] < 135


def test_alpha_is_flattened_onto_white() -> None:
    img = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    out = decode_image(encode(img, "PNG"), "RGB").image
    assert out.getpixel((5, 5)) == (255, 255, 255)


def test_gif_first_frame() -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, _, b = decode_image(data, "RGB").image.getpixel((3, 3))
    assert r > 200 and b < 50


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 422, "empty"),
        (b"GIF89a" + b"\x00" * 5, 422, "GIF"),
        (png_bomb(), 413, "30000x30000"),
        (encode(Image.new("L", (4, 100)), "PNG"), 422, "at least"),
        (b"%PDF-1.4 not an image", 422, "not a recognised image"),
    ],
)
def test_failures_name_the_problem(data: bytes, status: int, words: str) -> None:
    with pytest.raises(ImageError) as err:
        decode_image(data)
    assert err.value.status == status
    assert words in err.value.message


def test_upload_limit() -> None:
    with pytest.raises(ImageError) as err:
        decode_image(b"x" * 2000, limits=DecodeLimits(max_bytes=1000))
    assert err.value.status == 413


def test_oversized_body_is_refused_before_reading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from services.phash.service import PhashSettings, build_app

    settings = PhashSettings(data_dir=tmp_path, max_upload_bytes=10_000)
    with TestClient(build_app(settings)) as client:
        r = client.post(
            "/calculate_phash_features", files={"image": ("a.png", b"x" * (2 << 20))}, data={"image_id": "1"}
        )
        assert r.status_code == 413 and "upload limit" in r.json()["detail"]
        r = client.post(
            "/calculate_phash_features", files={"image": ("a.png", b"x" * 20_000)}, data={"image_id": "1"}
        )
        assert r.status_code == 413
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "1", "P", "I", "F"])
def test_conversion_in_strips_equals_converting_the_whole_image(mode: str) -> None:
    from services.common.images import _STRIP_PIXELS, _grey_scale_top, _to_mode, convert_reduced

    rng = np.random.default_rng(7)
    width, height = 2500, 2 * _STRIP_PIXELS // 2500 + 37  # three strips, the last one partial
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    elif mode in ("I", "F"):
        dtype = np.int32 if mode == "I" else np.float32
        img = Image.fromarray(rng.integers(0, 1000, (height, width)).astype(dtype), mode)
    else:
        img = synthetic_image(4, (width, height)).convert("RGBA" if mode == "RGBA" else "L")
        img = img.convert(mode) if mode != "P" else img.convert("RGB").quantize(64)
    whole = _to_mode(img, "RGB", _grey_scale_top(img))
    assert np.array_equal(np.asarray(convert_reduced(img, "RGB")), np.asarray(whole))


@pytest.mark.parametrize(("kind", "mode"), [("gray16", "L"), ("rgba", "RGB"), ("bilevel", "RGB")])
def test_huge_images_are_reduced_to_the_size_the_feature_needs(kind: str, mode: str) -> None:
    from ambience_support.hostile_images import big_png

    decoded = decode_image(big_png(kind, 3000, 2000), mode, draft_size=256)  # type: ignore[arg-type]
    assert decoded.image.mode == mode
    assert 256 <= min(decoded.image.size) < 512 and decoded.full_size == (3000, 2000)
    # The bands survive the reduction: dark at the top, lighter further down.
    pixels = np.asarray(decoded.image.convert("L"), dtype=np.float64)
    assert pixels[:10].mean() != pytest.approx(pixels[-10:].mean(), abs=5)


def test_decode_budget_refuses_a_second_decode_that_does_not_fit() -> None:
    from services.common.images import decode_cost
    from services.common.limits import BudgetFull, MemoryBudget

    data = encode(synthetic_image(5, (400, 300)), "PNG")
    cost = decode_cost(Image.open(io.BytesIO(data)), "RGB")
    budget = MemoryBudget(cost + cost // 2, "decode")
    limits = DecodeLimits(budget=budget)
    with budget.reserve(cost), pytest.raises(BudgetFull) as err:  # another decode in flight
        decode_image(data, limits=limits)
    assert err.value.retry_after == 1 and "decode budget" in err.value.message
    assert budget.used == 0
    assert decode_image(data, limits=limits).image.size == (400, 300)  # alone it always fits
    with budget.reserve(10):  # a small decode in flight leaves room for this one
        assert decode_image(data, limits=limits).image.size == (400, 300)
