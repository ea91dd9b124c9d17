"""Global feature service: visually similar pictures by timm global vectors."""

from services.common.runner import run_app
from services.global_features.service import GlobalFeaturesSettings, build_app

if __name__ == "__main__":
    run_app(GlobalFeaturesSettings(), build_app)  # type: ignore[arg-type]
