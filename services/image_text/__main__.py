"""Image-text service: pictures matching a text query, and similar pictures, by CLIP embeddings."""

from services.common.runner import run_app
from services.image_text.service import ImageTextSettings, build_app

if __name__ == "__main__":
    run_app(ImageTextSettings(), build_app)  # type: ignore[arg-type]
