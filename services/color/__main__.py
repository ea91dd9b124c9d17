from services.color.service import ColorSettings, build_app
from services.common.runner import run_app

if __name__ == "__main__":
    run_app(ColorSettings(), build_app)  # type: ignore[arg-type]
