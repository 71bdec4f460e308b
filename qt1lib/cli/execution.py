"""Running one task per participant: serially, on a local dask cluster, or on a running scheduler.

* ``n_workers=1`` and no scheduler: in this process, one participant after the other, without dask.
* ``n_workers=N`` (N > 1): a ``distributed.LocalCluster`` of N worker processes with one thread
  each (``processes=True, threads_per_worker=1``: one participant per process, so participants
  run in parallel whatever the Python code holds, and the nanny starts each worker with one
  BLAS/OpenMP thread), started and stopped here.
  The nanny's environment for its workers (dask config ``distributed.nanny.pre-spawn-environ``)
  is kept but for ``MALLOC_TRIM_THRESHOLD_``, which dask sets to 64 KiB: it fixes glibc's mmap
  threshold too, so the MAP estimators' large temporary arrays are mapped and unmapped at every
  allocation; measured on the smoke cohort, one participant then took 28 s instead of 18 s in one
  process (``MALLOC_TRIM_THRESHOLD_=65536`` set by hand), 35 s instead of 18 s in a worker.
* ``scheduler=ADDRESS``: the workers of a running scheduler, e.g. a SLURM or PBS cluster started
  with ``dask-jobqueue``; they must have qt1lib installed and see the dataset, the output and the
  work folder at the same paths (a shared file system).

A task is a module-level function ``task(ws, subject, *args)`` and its arguments, which dask
pickles. The results are the same whichever way they run: each task computes the same store
entries from the same inputs, and entries shared between participants (e.g. the seed MAP's
histogram of a protocol) are committed once however many workers compute them at the same time
(:meth:`qt1lib.store.Store.put`). Progress is one bar over the participants (tqdm); a failed task
does not stop the others, and its error is returned in its place.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["TaskFailure", "run_per_participant"]


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: the participant, the error's one-line message and its traceback."""

    subject: str
    message: str
    traceback: str


def _failure(subject: str, err: BaseException) -> TaskFailure:
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    return TaskFailure(subject, f"{type(err).__name__}: {err}", text)


def run_per_participant(
    task: Callable[..., Any],
    ws: Any,
    subjects: Iterable[str],
    *args: Any,
    n_workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    what: str = "participants",
) -> dict[str, Any]:
    """``task(ws, subject, *args)`` for every subject (module docstring).

    Parameters
    ----------
    task : callable
        A module-level function (importable by the workers).
    ws : Workspace
        Passed to every task.
    subjects : iterable of str
        Labels without ``sub-``.
    *args
        Further arguments of every task.
    n_workers : int
        Worker processes of the local cluster; 1 (without ``scheduler``): serially, without dask.
    scheduler : str, optional
        Address of a running dask scheduler.
    progress : bool
        Show a progress bar.
    what : str
        Label of the progress bar.

    Returns
    -------
    dict of str to object
        Per subject, in the order given: the task's result, or a :class:`TaskFailure`.
    """
    subjects = list(subjects)
    if scheduler is None and n_workers <= 1:
        return _serial(task, ws, subjects, args, progress, what)
    import dask
    from distributed import Client, LocalCluster

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler)
        return _gather(client, cluster, task, ws, subjects, args, progress, what)


def _serial(task, ws, subjects: list[str], args: tuple, progress: bool, what: str) -> dict[str, Any]:
    """Every task in this process, one after the other."""
    from tqdm.auto import tqdm

    results: dict[str, Any] = {}
    for subject in tqdm(subjects, desc=what, unit="participant", disable=not progress):
        try:
            results[subject] = task(ws, subject, *args)
        except Exception as err:  # noqa: BLE001 - reported per participant, the others go on
            results[subject] = _failure(subject, err)
    return results


def _gather(client, cluster, task, ws, subjects: list[str], args: tuple, progress: bool, what: str) -> dict[str, Any]:
    """Submit one task per subject, collect results and failures as they complete, close the client."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    results: dict[str, Any] = {}
    try:
        run = uuid.uuid4().hex[:8]  # task keys unique on a shared scheduler
        futures = {client.submit(task, ws, subject, *args, pure=False, key=f"qt1-{what}-sub-{subject}-{run}"): subject
                   for subject in subjects}
        with tqdm(total=len(futures), desc=what, unit="participant", disable=not progress) as bar:
            for future in as_completed(futures):
                subject = futures[future]
                try:
                    results[subject] = future.result()
                except Exception as err:  # noqa: BLE001 - reported per participant, the others go on
                    results[subject] = _failure(subject, err)
                bar.update(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return {s: results[s] for s in subjects}
