"""Tagger service: Places365 scene tags and indoor/outdoor for an uploaded picture."""

from services.common.runner import run_service
from services.tagger.descriptor import DESCRIPTOR

if __name__ == "__main__":
    run_service(DESCRIPTOR)
