"""The parts of ``python -m bench.model_speed_bench``, one module each, and what they share (common)."""
