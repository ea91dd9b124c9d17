from services.common.runner import run_app
from services.phash.service import PhashSettings, build_app

if __name__ == "__main__":
    run_app(PhashSettings(), build_app)  # type: ignore[arg-type]
