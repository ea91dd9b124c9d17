"""A process's resident memory, read from Linux's /proc (the tests' memory limits and the benches'
memory columns): now, at its peak, and the peak restarted. MB here are MiB (the kernel's kB / 1024).
Standard library only, so a measured process that reads its own memory loads nothing more."""

from __future__ import annotations

from pathlib import Path


def _status_mb(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def rss_mb(pid: int | str = "self") -> float:
    """The process's resident set size now (VmRSS), in MB."""
    return _status_mb(pid, "VmRSS:")


def peak_rss_mb(pid: int | str = "self") -> float:
    """The process's peak resident set size so far (VmHWM), in MB."""
    return _status_mb(pid, "VmHWM:")


def reset_peak_rss(pid: int | str = "self") -> None:
    """Restart VmHWM from the current RSS (Linux: writing 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
