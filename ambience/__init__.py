"""The ``ambience`` command line: one module per command, wired together by :mod:`ambience.cli`."""
