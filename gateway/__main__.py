"""Run the gateway: ``python -m gateway`` (port 44444 unless AMBIENCE_GATEWAY_PORT says otherwise)."""

import logging

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.runner import run_app

if __name__ == "__main__":
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    run_app(GatewaySettings(), create_app)  # type: ignore[arg-type]
