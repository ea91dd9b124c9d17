"""Support code for the tests, the benchmarks and the tools (not used by the services themselves).
Every helper a test module, a bench or a tool shares lives here: no module under tests/ or bench/
imports a module under tests/ (tests/support/test_support.py checks it).

Data and pictures:

- :mod:`.photos`: the shared photo folders (``AMBIENCE_TEST_PHOTOS`` / ``_FULL``), loading them,
  byte-identical copies; :mod:`.caltech`: caltech101-dev through global_features with the real
  Lite0 weights (``ambience import``'s batched path), once per test run.
- :mod:`.images`: generated pictures and encoding; :mod:`.media`: phone and camera files (HEIC,
  AVIF, DNG, video) made in the test; :mod:`.bad_uploads`: the uploads every image route refuses;
  :mod:`.hostile_images` (huge and lying files), :mod:`.textured` (texture for SIFT),
  :mod:`.signs` (rendered text for OCR).
- :mod:`.transforms`: the copy transforms (edited copies a search must see through) and the named
  sets built from them; :mod:`.copy_groups`: the duplicate groups' quality bar.
- :mod:`.tiny_models`, :mod:`.tiny_tokenizer`, :mod:`.checkpoints`, :mod:`.offline`: tiny model
  configurations with random weights, tokenizers and checkpoint layouts, the offline environment.
- :mod:`.memory`: a process's resident memory, now and at its peak (tests' limits, benches' columns).

Services and stacks:

- :mod:`.inprocess`: services and the gateway in the test process (their ASGI apps, the gateway's
  calls through ASGI transports, all served over real HTTP) for tests whose subject is not the
  process;
- :mod:`.processes`: a service as a real process on a free port; :mod:`.stacks`: whole stacks as
  processes (services plus the gateway, or ``ambience serve`` as a user runs it), the quick test
  settings of both kinds; :mod:`.hostile`, :mod:`.replicas`, :mod:`.link_replicas`: the stacks of the
  hostile battery and of replica tests; :mod:`.proxies`: a rate-limiting proxy;
  :mod:`.weights_server`, :mod:`.fixture_service`: a local weights server and the model service the
  download tests register; :mod:`.toy_service`: the service tests/test_adding_a_service.py adds.
- :mod:`.pg`: the test session's PostgreSQL server (``pg_server`` / ``pg_dsn`` in tests/conftest.py).
- :mod:`.workers`: the suite's worker processes (what ``-n auto`` means here) and what they make
  once per run and share (the ONNX exports, the Caltech collection).
- :mod:`.contract`: the standard-route contract every feature service's test module runs;
  :mod:`.explore`: calls of the explore tests; :mod:`.compose`: deploy/'s Compose files;
  :mod:`.browser`: the page tests' Chromium; :mod:`.evaluation`: ``python -m bench.evaluate`` as the
  tests run it; :mod:`.extras`: what an image built with some extras can import.
"""
