"""Local features: SIFT keypoints, HardNet8 or RootSIFT descriptors, IVF-OPQ FAISS index and
SMNN + MAGSAC++ verification. Finds an image from a crop, a rotation or a re-encoded copy."""
