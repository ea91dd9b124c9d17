"""People: faces grouped into persons (clustering.py), with the user's decisions kept."""
