"""Tagger service: Places365 scene tags and indoor/outdoor for an uploaded picture."""

from services.common.runner import run_app
from services.tagger.service import TaggerSettings, build_app

if __name__ == "__main__":
    run_app(TaggerSettings(), build_app)  # type: ignore[arg-type]
