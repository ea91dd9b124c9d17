"""Captioner: caption cleaning, beam search, CoCa checkpoint formats, service over HTTP, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import open_clip
import pytest
import torch
from fastapi.testclient import TestClient

from ambience_support.bad_uploads import bad_uploads
from ambience_support.checkpoints import checkpoint_variants
from ambience_support.images import encode, synthetic_image
from ambience_support.photos import REPO
from ambience_support.processes import ServiceProcess
from ambience_support.tiny_models import CAPTION_MAX_LENGTH, TINY_COCA
from ambience_support.tiny_models import captioner_env as service_env
from services.captioner.coca import CocaCaptioner, beam_search, clean_caption
from services.captioner.incremental import CachedCocaDecoder
from services.captioner.service import CaptionerSettings, build_app
from services.common.errors import EXIT_WEIGHTS_MISSING, StartupError
from services.common.models.open_clip_loader import initialise_open_clip_leftovers
from services.common.models.weights import ResolvedWeights
from services.registry import required_weights

#: Left out of day-to-day runs (pytest -m "not slow"): the captioner's architectures built.
pytestmark = pytest.mark.slow

RANDOM = ResolvedWeights("random", None, "random-seed0", "random")
CPU = torch.device("cpu")
MAX_LENGTH = CAPTION_MAX_LENGTH


@pytest.fixture(scope="module", autouse=True)
def tiny_coca() -> None:
    open_clip.add_model_config(TINY_COCA)


def test_clean_caption() -> None:
    assert clean_caption("<start_of_text>a dog on a couch . <end_of_text>!!!") == "a dog on a couch."
    assert clean_caption("<start_of_text>  two  cats , sleeping <end_of_text>") == "two cats, sleeping"
    assert clean_caption("<start_of_text><end_of_text>") == ""


# -- beam search ------------------------------------------------------------------------------------------

SOT, EOT = 4, 5
NEG = -100.0


def bigram_logits(table: dict[int, list[float]]):  # type: ignore[no-untyped-def]
    """A toy decoder: the next-token logits depend on the last token only."""

    def step(rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return torch.tensor([table.get(int(t), [NEG] * 6) for t in tokens[:, -1]])

    return step


# Greedy takes 0 first (logit 3 > 2.5) and then can only go on weakly; starting with 1 leads to
# a strong continuation (1 -> 2 -> 3), which a 2-beam search finds.
TABLE = {
    SOT: [3.0, 2.5, NEG, NEG, NEG, NEG],
    0: [NEG, NEG, NEG, 0.5, NEG, 0.0],
    1: [NEG, NEG, 4.0, NEG, NEG, NEG],
    2: [NEG, NEG, NEG, 4.0, NEG, NEG],
    3: [NEG, NEG, NEG, NEG, NEG, 3.0],
}


def test_beam_search_finds_what_greedy_misses() -> None:
    search = bigram_logits(TABLE)
    greedy = beam_search(search, 1, SOT, EOT, width=1, min_length=2, max_length=8, device=CPU)
    beam = beam_search(search, 1, SOT, EOT, width=2, min_length=2, max_length=8, device=CPU)
    assert greedy == [[SOT, 0, 3]]  # then the end token
    assert beam == [[SOT, 1, 2, 3]]


def test_beam_search_respects_min_and_max_length_per_image() -> None:
    eager = {SOT: [NEG, NEG, NEG, 1.0, NEG, 2.0], 3: [NEG, NEG, NEG, 1.0, NEG, 2.5]}
    out = beam_search(bigram_logits(eager), 2, SOT, EOT, width=2, min_length=4, max_length=9, device=CPU)
    assert out == [[SOT, 3, 3, 3]] * 2  # the end token is barred until the 4th position
    endless = {SOT: [1.0, NEG, NEG, NEG, NEG, NEG], 0: [1.0, NEG, NEG, NEG, NEG, NEG]}
    out = beam_search(bigram_logits(endless), 1, SOT, EOT, width=3, min_length=2, max_length=6, device=CPU)
    assert out == [[SOT, 0, 0, 0, 0, 0]]


# -- CoCa checkpoints ----------------------------------------------------------------------------------------


def steered_state(words: list[str]) -> tuple[dict[str, torch.Tensor], set[int]]:
    """A tiny CoCa whose decoder can only say ``words`` (or end): every other token's logit is 0,
    these get about +10 plus a context-dependent part."""
    torch.manual_seed(5)
    net = initialise_open_clip_leftovers(open_clip.create_model("tiny-coca"))
    tokenizer = open_clip.get_tokenizer("tiny-coca")
    allowed = {tokenizer.encoder[f"{w}</w>"] for w in words} | {tokenizer.eot_token_id}
    state = net.state_dict()
    with torch.no_grad():
        ln_w, ln_b = state["text_decoder.ln_final.weight"], state["text_decoder.ln_final.bias"]
        ln_w[0], ln_b[0] = 0.0, 10.0  # feature 0 of every position is the constant 10
        projection = state["text_decoder.text_projection"]  # (width, vocab)
        keep = projection[:, sorted(allowed)].clone() * 3
        projection.zero_()
        projection[:, sorted(allowed)] = keep
        projection[0, sorted(allowed)] = 1.0
    return state, allowed


WORDS = ["a", "dog", "on", "the", "grass", "with", "ball"]


def test_caption_from_a_checkpoint_is_made_of_its_vocabulary(tmp_path: Path) -> None:
    state, allowed = steered_state(WORDS)
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    captioner = CocaCaptioner(
        "tiny-coca", ResolvedWeights("file", path, "x", str(path)), CPU, max_length=MAX_LENGTH
    )
    images = torch.stack([captioner.preprocess(synthetic_image(i)) for i in range(3)])
    tokens = captioner.generate(images)
    for ids in tokens:
        assert ids[0] == captioner.sot and set(ids[1:]) <= allowed - {captioner.eot}
        assert len(ids) >= captioner.min_length - 1
    captions = captioner.caption(images)
    for caption in captions:
        assert caption and set(caption.split()) <= set(WORDS), caption


def test_coca_checkpoint_formats_load_strictly(tmp_path: Path) -> None:
    state, _ = steered_state(WORDS)
    variants = checkpoint_variants(state, tmp_path)
    image = synthetic_image(3)
    results = {}
    for label, path in variants.items():
        c = CocaCaptioner(
            "tiny-coca", ResolvedWeights("file", path, "x", str(path)), CPU, max_length=MAX_LENGTH
        )
        results[label] = c.generate(c.preprocess(image)[None])
    assert len({str(r) for r in results.values()}) == 1, results
    broken = tmp_path / "broken.bin"
    torch.save({k: v for k, v in state.items() if not k.startswith("text_decoder.")}, broken)
    with pytest.raises(StartupError, match="does not fit"):
        CocaCaptioner("tiny-coca", ResolvedWeights("file", broken, "x", str(broken)), CPU)


def test_a_clip_model_is_refused() -> None:
    with pytest.raises(StartupError, match="not a CoCa model"):
        CocaCaptioner("RN50", RANDOM, CPU)


def test_the_default_architecture_builds_and_decodes() -> None:
    """The real coca_ViT-L-14 (random weights, ~640M parameters): image tower, text tower and
    decoder fit together; two decoder steps keep it quick."""
    settings = CaptionerSettings()
    captioner = CocaCaptioner(settings.model, RANDOM, CPU, min_length=2, max_length=3)
    assert isinstance(captioner.net, open_clip.CoCa) and captioner.context_length == 76
    pixels = captioner.preprocess(synthetic_image(1, (400, 300)))
    assert pixels.shape == (3, 224, 224)
    (ids,) = captioner.generate(pixels[None])
    assert ids[0] == captioner.sot and 1 <= len(ids) <= 3
    assert isinstance(captioner.decode(ids), str)


# -- key/value cache ---------------------------------------------------------------------------------------


@pytest.fixture
def deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize(("width", "max_length"), [(1, 8), (1, 20), (2, 14), (2, 24), (3, 12)])
def test_the_key_value_cache_gives_the_same_tokens(width: int, max_length: int, deterministic: None) -> None:
    """Seeded random weights, float32: the cached decoder and the whole-prefix recomputation pick
    the same token ids for every image (greedy = width 1, and beam search), whether captions run to
    the length limit, end early (end token favoured) or contain the pad token "!" (id 0), which the
    text tower's attention mask hides from later positions."""
    captioner = CocaCaptioner("tiny-coca", RANDOM, CPU, beam_width=width, max_length=max_length)
    assert captioner.kv_cache
    decoder = captioner.net.text_decoder
    pixels = torch.stack([captioner.preprocess(synthetic_image(i)) for i in range(4)])
    ended_early = with_pad = 0
    for eot_bias, pad_bias in [(0.0, 0.0), (5.0, 0.0), (4.0, 3.5)]:
        with torch.no_grad():  # feature 0 after the final norm is the constant 1: its row biases tokens
            decoder.ln_final.weight[0], decoder.ln_final.bias[0] = 0.0, 1.0
            decoder.text_projection[0, captioner.eot] = eot_bias
            decoder.text_projection[0, 0] = pad_bias
        captioner.kv_cache = True
        cached = captioner.generate(pixels)
        captioner.kv_cache = False
        recomputed = captioner.generate(pixels)
        assert cached == recomputed, (eot_bias, pad_bias)
        ended_early += sum(len(ids) < max_length for ids in cached)
        with_pad += sum(0 in ids for ids in cached)
    if max_length >= 14:  # the biased rounds exercise early ends and the pad mask
        assert ended_early and with_pad, (ended_early, with_pad)


def test_the_cache_gives_the_whole_prefix_logits_for_any_beam_layout(deterministic: None) -> None:
    """Beyond beam search's own layout (beams grouped by image, one token per step): beams not
    grouped by image (their image keys are copied per beam), a prefix of several tokens holding the
    pad token in one call, a cache that outgrows its capacity, reorders that move some beams and
    keep others, and a cache rewound to repeat a step, all give the logits of the whole-prefix
    recomputation (the captioner's own uncached step)."""
    captioner = CocaCaptioner("tiny-coca", RANDOM, CPU, kv_cache=False)
    net = captioner.net
    pixels = torch.stack([captioner.preprocess(synthetic_image(i)) for i in range(2)])
    rows = torch.tensor([1, 0, 1])
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 49000, (3, 9), generator=generator)
    tokens[:, 0] = captioner.sot
    tokens[1, 2] = tokens[2, 5] = 0  # the pad id, hidden from later positions
    with torch.inference_mode():
        image_embs = captioner.encode(pixels)
        decoder = CachedCocaDecoder(net, image_embs, capacity=4)
        recomputed, no_reorder = captioner.decoding_step(image_embs)
        assert no_reorder is None and not isinstance(recomputed, CachedCocaDecoder)

        for length, reorder in [(3, None), (4, [2, 1, 2]), (5, [0, 1, 2]), (6, [2, 1, 0]), (9, None)]:
            if reorder is not None:
                index = torch.tensor(reorder)
                decoder.reorder(index)
                tokens = tokens[index]
            prefix = tokens[:, :length]
            torch.testing.assert_close(decoder(rows, prefix), recomputed(rows, prefix), rtol=1e-4, atol=1e-5)
        assert decoder.capacity >= 9
        # Rewound, the cache recomputes the positions it forgot: the same step, again and again.
        for kept in (8, 8, 5):
            decoder.rewind(kept)
            torch.testing.assert_close(decoder(rows, tokens), recomputed(rows, tokens), rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="holds 9"):
            decoder.rewind(10)


def test_the_cache_refuses_to_move_beams_across_images() -> None:
    captioner = CocaCaptioner("tiny-coca", RANDOM, CPU)
    pixels = torch.stack([captioner.preprocess(synthetic_image(i)) for i in range(2)])
    with torch.inference_mode():
        _, image_embs = captioner.net._encode_image(pixels)
        decoder = CachedCocaDecoder(captioner.net, image_embs)
        rows = torch.tensor([0, 0, 1, 1])
        decoder(rows, torch.full((4, 1), captioner.sot))
        decoder.reorder(torch.tensor([1, 1, 2, 3]))  # within each image: fine
        with pytest.raises(ValueError, match="another image"):
            decoder.reorder(torch.tensor([0, 2, 2, 3]))


def test_kv_cache_setting_reaches_the_captioner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in {**service_env(tmp_path), "AMBIENCE_CAPTIONER_KV_CACHE": "0"}.items():
        monkeypatch.setenv(key, value)
    with TestClient(build_app()) as client:
        assert client.get("/health").json()["kv_cache"] is False


# -- the service --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = service_env(tmp_path_factory.mktemp("models"))
    svc = ServiceProcess("services.captioner", "AMBIENCE_CAPTIONER_", tmp_path_factory.mktemp("data"), env)
    svc.start(timeout=120)
    try:
        yield svc
    finally:
        svc.stop()


def caption_request(url: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return httpx.post(url + "/get_image_caption", files={"image": (name, data)}, timeout=120)


def test_caption_over_http_with_random_weights(server: ServiceProcess) -> None:
    data = encode(synthetic_image(11))
    r = caption_request(server.url, data)
    assert r.status_code == 200, r.text
    caption = r.json()
    assert isinstance(caption, str) and caption == caption.strip() and caption
    assert "<start_of_text>" not in caption and "<end_of_text>" not in caption
    # Every word is made of the tokenizer's vocabulary: encoding it and decoding gives it back.
    # (Random logits are close to tied, so the exact words depend on float rounding: the
    # checkpoint tests below pin the words down.)
    tokenizer = open_clip.get_tokenizer("tiny-coca")
    for word in caption.split():
        assert tokenizer.decode(tokenizer.encode(word)).strip() == word


def test_caption_from_a_checkpoint_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, _ = steered_state(WORDS)
    path = tmp_path / "steered.bin"
    torch.save(state, path)
    for key, value in {**service_env(tmp_path), "AMBIENCE_CAPTIONER_WEIGHTS": str(path)}.items():
        monkeypatch.setenv(key, value)
    with TestClient(build_app()) as client:
        r = client.post("/get_image_caption", files={"image": ("a.png", encode(synthetic_image(2), "PNG"))})
        health = client.get("/health").json()
    assert r.status_code == 200 and set(r.json().split()) <= set(WORDS) and r.json()
    assert health["weights"] == "file" and health["weights_source"] == str(path)


@pytest.mark.parametrize(("label", "payload", "status"), bad_uploads())
def test_bad_images_are_4xx_and_the_service_stays_up(
    server: ServiceProcess, label: str, payload: bytes, status: int
) -> None:
    r = caption_request(server.url, payload)
    assert r.status_code == status, (label, r.text)
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_info_routes(server: ServiceProcess) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["weights"] == "random" and health["model"] == "tiny-coca"
    assert health["max_length"] == MAX_LENGTH and health["beam_width"] == 2 and health["kv_cache"] is True
    assert httpx.post(server.url + "/get_image_caption", data={"x": "1"}).status_code == 422
    metrics = httpx.get(server.url + "/metrics").text
    assert 'route="/get_image_caption",status="422"' in metrics
    assert "/get_image_caption" in httpx.get(server.url + "/openapi.json").json()["paths"]
    assert httpx.get(server.url + "/docs").status_code == 200


# -- weights ------------------------------------------------------------------------------------------


def test_registry_names_the_hub_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIENCE_MODELS_DIR", str(tmp_path))
    (wf,) = required_weights("captioner")
    assert wf.hf_repo == "laion/mscoco_finetuned_CoCa-ViT-L-14-laion2B-s13B-b90k"
    assert wf.target.is_relative_to(tmp_path / "captioner")
    monkeypatch.setenv("AMBIENCE_CAPTIONER_WEIGHTS", "random")
    assert required_weights("captioner") == []


def test_exits_2_naming_the_fetch_command_without_weights(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AMBIENCE_MODELS_DIR": str(tmp_path / "models"),
        "AMBIENCE_DOWNLOAD_MODELS": "0",
        "AMBIENCE_CAPTIONER_PORT": "0",
        "AMBIENCE_CAPTIONER_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "services.captioner"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == EXIT_WEIGHTS_MISSING, proc.stderr
    assert "open_clip_model.safetensors" in proc.stderr and "ambience models fetch captioner" in proc.stderr


def test_random_coca_weights_do_not_depend_on_leftover_memory() -> None:
    """open_clip allocates CoCa's text-decoder projection uninitialised; random weights must still
    be the same in every build (and small), whatever the allocator held before."""
    from services.common.models.open_clip_loader import load_open_clip_model

    first = load_open_clip_model("tiny-coca", RANDOM).state_dict()["text_decoder.text_projection"].clone()
    leftover = torch.full((5_000_000,), 7.0)
    del leftover
    second = load_open_clip_model("tiny-coca", RANDOM).state_dict()["text_decoder.text_projection"]
    assert torch.equal(first, second)
    assert first.abs().max() < 1
