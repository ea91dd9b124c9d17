"""Captioner service: a one-sentence caption for an uploaded picture (open_clip CoCa)."""

from services.captioner.service import CaptionerSettings, build_app
from services.common.runner import run_app

if __name__ == "__main__":
    run_app(CaptionerSettings(), build_app)  # type: ignore[arg-type]
