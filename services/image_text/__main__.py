"""Image-text service: pictures matching a text query, and similar pictures, by CLIP embeddings."""

from services.common.runner import run_service
from services.image_text.descriptor import DESCRIPTOR

if __name__ == "__main__":
    run_service(DESCRIPTOR)
