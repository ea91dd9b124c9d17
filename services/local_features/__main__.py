from services.common.runner import run_service
from services.local_features.descriptor import DESCRIPTOR

if __name__ == "__main__":
    run_service(DESCRIPTOR)
