from services.common.runner import run_service
from services.faces.descriptor import DESCRIPTOR

if __name__ == "__main__":
    run_service(DESCRIPTOR)
