"""Global feature service: visually similar pictures by timm global vectors."""

from services.common.runner import run_service
from services.global_features.descriptor import DESCRIPTOR

if __name__ == "__main__":
    run_service(DESCRIPTOR)
