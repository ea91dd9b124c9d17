from services.color.descriptor import DESCRIPTOR
from services.common.runner import run_service

if __name__ == "__main__":
    run_service(DESCRIPTOR)
