"""Faces: every face in a picture (dlib HOG detector, 5-point landmarks) and its 128-d ResNet
descriptor, several rows per image in FAISS; the people grouping builds on them (gateway/people)."""
