"""Retrieval-quality and speed evaluation of every service and of the fused search."""
