"""576-bit DCT perceptual hash service: near-duplicate search by Hamming distance."""
