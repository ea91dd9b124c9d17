"""The parts of ``python -m bench.scale_bench``, one module each (vectors: ``bench/vectors.py``)."""
