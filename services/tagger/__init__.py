"""Scene tags for pictures: ResNet50 trained on Places365 (CSAIL)."""
