from services.common.runner import run_app
from services.ocr.service import OcrSettings, build_app

if __name__ == "__main__":
    run_app(OcrSettings(), build_app)  # type: ignore[arg-type]
