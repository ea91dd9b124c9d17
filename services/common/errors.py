"""Start-up refusals and the process exit codes the runner turns them into."""

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
