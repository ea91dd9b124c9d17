"""The parts of ``python -m bench.copy_recall_bench``, one module each, and what they share (ranks)."""
