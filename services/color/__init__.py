"""Colour histogram service: pictures with a similar palette, by L1 distance."""
