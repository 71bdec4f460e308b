"""The BIDS-App command ``qt1`` and ``qt1-cohort``: T1 maps of a user's BIDS dataset, in parallel on dask.

Modules (one job each):

=================  ==========================================================================
``arguments``      the command lines and the configuration they give (:class:`~.arguments.Options`)
``participant``    the participant level: every map of one participant, a task dask can run
``group``          the group level: agreement with IR T1, the calibration, ``participants.tsv``
``tables``         the group level's tables and the description of their columns
``execution``      one task per participant: serially, on a local dask cluster or a running scheduler
``main``           the console scripts: messages and exit status
=================  ==========================================================================

Usage::

    qt1 BIDS_DIR OUTPUT_DIR participant [--participant-label 01 02] [--n-workers 4]
    qt1 BIDS_DIR OUTPUT_DIR group
    qt1-cohort OUTPUT_DIR --profile smoke --seed 0
    python -m qt1lib.cli --help

OUTPUT_DIR is a BIDS derivative dataset (:mod:`qt1lib.derivatives`); the cache of every result
lives in ``--work-dir`` (default ``OUTPUT_DIR/.work``, hidden from BIDS tools).
"""

from .main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, cohort_main, main

__all__ = ["main", "cohort_main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]
