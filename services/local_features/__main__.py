from services.common.runner import run_app
from services.local_features.service import LocalFeaturesSettings, build_app

if __name__ == "__main__":
    run_app(LocalFeaturesSettings(), build_app)  # type: ignore[arg-type]
