"""Duplicate groups: copies, near shots, their links, rebuilds and keepers."""
