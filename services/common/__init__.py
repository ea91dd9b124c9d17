"""The kit every ambience service is built from: settings, image decoding, LMDB store,
FAISS index, collection (store + index), app factory, metrics."""
