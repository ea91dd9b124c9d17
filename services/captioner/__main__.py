"""Captioner service: a one-sentence caption for an uploaded picture (open_clip CoCa)."""

from services.captioner.descriptor import DESCRIPTOR
from services.common.runner import run_service

if __name__ == "__main__":
    run_service(DESCRIPTOR)
