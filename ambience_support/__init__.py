"""Support code for the tests, the benchmarks and the tools (not used by the services themselves):

- :mod:`.photos`: the shared photo folders (``AMBIENCE_TEST_PHOTOS`` / ``_FULL``), loading them,
  byte-identical copies.
- :mod:`.images`: generated pictures, encoding, and the bad uploads every image route refuses.
- :mod:`.transforms`: the copy transforms (edited copies a search must see through) and the named
  sets built from them: the local-features recall set, the evaluation's copy-detection set, and
  the photo variants of the global-features checks.
- :mod:`.processes`: a service as a real process on a free port.
- :mod:`.memory`: a process's resident memory, now and at its peak (tests' limits, benches' columns).
- :mod:`.tiny_tokenizer`: a tiny Hugging Face tokenizer, for SigLIP 2 without its real files.
- :mod:`.stacks`: whole stacks: services plus the gateway as processes (tests), or
  ``ambience serve`` as a user runs it (the evaluation); the service list comes from
  services.registry.
"""
