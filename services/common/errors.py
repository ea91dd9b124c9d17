"""Errors every part of the kit may raise, light enough for any of them to import: start-up
refusals with the process exit codes the runner turns them into, refusal of data built otherwise,
and an unreachable database (HTTP 503), which the app shell answers without importing a driver."""

from __future__ import annotations

EXIT_WEIGHTS_MISSING = 2
EXIT_STARTUP_FAILED = 3


class StartupError(RuntimeError):
    """The service cannot start with this configuration; the message says why and what to do."""

    exit_code = EXIT_STARTUP_FAILED


class WeightsMissingError(StartupError):
    """Model weights are not on disk and cannot be fetched. The runner exits with code 2, which
    tells ``ambience serve`` to mark the service unavailable instead of failing the stack."""

    exit_code = EXIT_WEIGHTS_MISSING


class StoreMismatchError(RuntimeError):
    """The data on disk was built with a different feature configuration than the one asked for."""


class DatabaseUnavailable(RuntimeError):
    """The PostgreSQL server cannot be reached (HTTP 503). The message names the server and why.
    ``maybe_committed``: the connection broke during COMMIT, so the transaction may have taken
    effect all the same; otherwise it surely did not."""

    status = 503

    def __init__(self, message: str, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed
