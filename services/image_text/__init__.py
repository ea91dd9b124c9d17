"""image_text: CLIP (open_clip) image and text embeddings in one space; text-to-image search."""
