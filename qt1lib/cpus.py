"""How many CPU cores this process may use, for the thread pools and the dask cluster."""

from __future__ import annotations

import os

__all__ = ["usable_cpus", "default_threads"]


def usable_cpus() -> int:
    """The CPU cores this process may use (``os.sched_getaffinity`` where available, else ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a NumPy thread pool: ``OMP_NUM_THREADS`` where it is set to a positive integer, else :func:`usable_cpus`.

    A process that was told to use one thread per worker (dask's nanny sets ``OMP_NUM_THREADS=1``
    in each worker it spawns; so do job schedulers) then does not start more threads than cores.
    """
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return usable_cpus()
