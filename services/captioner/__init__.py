"""Captions for pictures: open_clip CoCa with beam search."""
