"""The tissue registry: one definition of the tissue classes of the study.

Each :class:`Tissue` carries

* ``label``: its value in a segmentation (``dseg``) in the space of the maps: 1 WM,
  2 subcortical GM, 3 cortical GM, 4 CSF (0 is background). This is the digital cohort's
  ``dseg`` convention (:mod:`qt1lib.phantom`), and the one a user's segmentation must follow;
* ``key``: a short identifier for code, dictionary keys and glued names (``"wm"``,
  ``"sgm"``, ``"cgm"``, ``"csf"``);
* ``name``: the display name in tables and figures (``"WM"``, ``"subcortical GM"``,
  ``"cortical GM"``, ``"CSF"``), the ``tissue`` column of the statistics' voxel tables;
* ``bids_label``: the value of the BIDS ``label-`` entity in derivative file names and of the
  ``name`` column of ``dseg.tsv`` (``"WM"``, ``"sGM"``, ``"cGM"``, ``"CSF"``);
* ``twopool``: its 7 T two-pool defaults, the very entry of
  :data:`qt1lib.sequences.twopool.TISSUES_7T` (the numbers and their literature sources stay
  there, in one place). Its ``name`` (``"subcortical_GM"``, ...) is the key of ``TISSUES_7T``
  and of the digital cohort's JSON files (``parameters.json``, ``sub-XX_tissues.json``);
* ``scored``: whether calibration and statistics score it (WM, subcortical GM and cortical GM:
  the seed's three tissue classes, Saunders et al. 2025; CSF is not scored).

Lookups take one spelling each: :func:`by_label`, :func:`by_key`, :func:`by_name`.
:func:`by_any_name` also accepts the other spellings found in files (BIDS labels, the two-pool
names, the words of :data:`ALIASES`) and is meant only for reading existing data, such as
:func:`read_dseg_tsv` (this study's label convention) and :func:`read_dseg_mapping` (any other
pipeline's labels, mapped to the registry by name).

Dependencies: this module imports :mod:`qt1lib.sequences.twopool` for the values;
:mod:`qt1lib.sequences` must not import this module (no import cycle).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .sequences.twopool import TISSUES_7T, TwoPoolTissue
from .validate import is_integer

__all__ = [
    "Tissue",
    "WM",
    "SGM",
    "CGM",
    "CSF",
    "ALL",
    "SCORED",
    "by_label",
    "by_key",
    "by_name",
    "by_any_name",
    "labels",
    "names",
    "label_names",
    "name_keys",
    "sort_names",
    "ALIASES",
    "GREY_MATTER_NAMES",
    "BACKGROUND_NAMES",
    "DsegMapping",
    "read_dseg_mapping",
    "read_dseg_tsv",
]


@dataclass(frozen=True)
class Tissue:
    """One tissue class of the study.

    Attributes
    ----------
    label : int
        Value in a segmentation (``dseg``); >= 1.
    key : str
        Short identifier (lower case), e.g. ``"sgm"``.
    name : str
        Display name in tables and figures, e.g. ``"subcortical GM"``.
    bids_label : str
        Value of the BIDS ``label-`` entity and of ``dseg.tsv``'s ``name`` column, e.g. ``"sGM"``.
    twopool : TwoPoolTissue
        7 T two-pool defaults: the entry of :data:`qt1lib.sequences.twopool.TISSUES_7T`, with its
        sources in ``twopool.source``.
    scored : bool
        Whether calibration and statistics score this tissue.
    """

    label: int
    key: str
    name: str
    bids_label: str
    twopool: TwoPoolTissue
    scored: bool

    def __str__(self) -> str:
        return self.name


#: White matter.
WM = Tissue(1, "wm", "WM", "WM", TISSUES_7T["WM"], scored=True)
#: Subcortical grey matter (deep grey nuclei: thalamus, caudate, putamen, pallidum, accumbens).
SGM = Tissue(2, "sgm", "subcortical GM", "sGM", TISSUES_7T["subcortical_GM"], scored=True)
#: Cortical grey matter (all other grey matter).
CGM = Tissue(3, "cgm", "cortical GM", "cGM", TISSUES_7T["cortical_GM"], scored=True)
#: Cerebrospinal fluid (not scored).
CSF = Tissue(4, "csf", "CSF", "CSF", TISSUES_7T["CSF"], scored=False)

#: Every tissue, in label order.
ALL: tuple[Tissue, ...] = (WM, SGM, CGM, CSF)
#: The scored tissues, in label (and table) order: WM, subcortical GM, cortical GM.
SCORED: tuple[Tissue, ...] = tuple(t for t in ALL if t.scored)

_BY_LABEL = {t.label: t for t in ALL}
_BY_KEY = {t.key: t for t in ALL}
_BY_NAME = {t.name: t for t in ALL}


def _fold(text: str) -> str:
    """Case- and separator-insensitive form of a spelling: ``"subcortical_GM"`` -> ``"subcortical gm"``."""
    return " ".join(text.replace("_", " ").replace("-", " ").lower().split())


#: Further spellings of each tissue that other pipelines write in their ``dseg.tsv`` (the words
#: themselves, British and American; accepted by :func:`by_any_name`).
ALIASES: dict[Tissue, tuple[str, ...]] = {
    WM: ("white matter",),
    SGM: ("subcortical grey matter", "subcortical gray matter", "deep grey matter", "deep gray matter", "deep GM"),
    CGM: ("cortical grey matter", "cortical gray matter"),
    CSF: ("cerebrospinal fluid",),
}
#: Names of grey matter as one class, not split into subcortical and cortical GM (fMRIPrep and
#: sMRIPrep write ``1 GM, 2 WM, 3 CSF``, from FSL FAST; SPM's and ANTs' three-class segmentations
#: likewise): :func:`read_dseg_mapping` lists such labels in :attr:`DsegMapping.grey_matter`.
GREY_MATTER_NAMES: tuple[str, ...] = ("GM", "grey matter", "gray matter")
#: Names of the background, which some tables list as index 0.
BACKGROUND_NAMES: tuple[str, ...] = ("background", "bg", "unknown")

_BY_ANY_NAME = {
    _fold(s): t for t in ALL for s in (t.key, t.name, t.bids_label, t.twopool.name, *ALIASES[t])
}


def _known(values: Iterable[object]) -> str:
    return ", ".join(repr(v) for v in values)


def by_label(label: int) -> Tissue:
    """The tissue with segmentation value ``label``.

    Parameters
    ----------
    label : int
        Segmentation value (NumPy integers and integral floats are accepted).

    Raises
    ------
    ValueError
        For a value that is not an integer or not a tissue's label; the message lists the known
        labels.
    """
    if not is_integer(label, integral_floats=True) or int(label) not in _BY_LABEL:
        known = ", ".join(f"{t.label} ({t.name})" for t in ALL)
        raise ValueError(f"unknown tissue label {label!r}; known labels: {known}")
    return _BY_LABEL[int(label)]


def by_key(key: str) -> Tissue:
    """The tissue with short identifier ``key`` (``"wm"``, ``"sgm"``, ``"cgm"``, ``"csf"``).

    Raises
    ------
    ValueError
        For an unknown key; the message lists the known keys.
    """
    if not isinstance(key, str) or key not in _BY_KEY:
        raise ValueError(f"unknown tissue key {key!r}; known keys: {_known(_BY_KEY)}")
    return _BY_KEY[key]


def by_name(name: str) -> Tissue:
    """The tissue with display name ``name`` (exact: ``"WM"``, ``"subcortical GM"``, ...).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known names. Use :func:`by_any_name` to read
        other spellings from existing files.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(f"unknown tissue name {name!r}; known names: {_known(_BY_NAME)}")
    return _BY_NAME[name]


def by_any_name(spelling: str) -> Tissue:
    """The tissue for any spelling that this project's files use; only for reading existing data.

    Accepted, ignoring case, ``_``, ``-`` and repeated spaces: the key (``"sgm"``), the display
    name (``"subcortical GM"``), the BIDS label (``"sGM"``), the two-pool name
    (``"subcortical_GM"``, the key of :data:`~qt1lib.sequences.twopool.TISSUES_7T`) and the words
    of :data:`ALIASES` (``"white matter"``). Grey matter as one class (``"GM"``) is not a tissue
    of the study: :func:`read_dseg_mapping` handles it.

    Raises
    ------
    ValueError
        For an unknown spelling; the message lists the display names.
    """
    tissue = _BY_ANY_NAME.get(_fold(spelling)) if isinstance(spelling, str) else None
    if tissue is None:
        spellings = ", ".join(f"{t.name} ({t.key}, {t.bids_label}, {t.twopool.name})" for t in ALL)
        raise ValueError(f"unknown tissue {spelling!r}; known tissues: {spellings}")
    return tissue


def labels(tissues: Iterable[Tissue] = SCORED) -> tuple[int, ...]:
    """Segmentation values of ``tissues`` (default the scored ones: ``(1, 2, 3)``)."""
    return tuple(t.label for t in tissues)


def names(tissues: Iterable[Tissue] = SCORED) -> tuple[str, ...]:
    """Display names of ``tissues`` in their order (default the scored ones)."""
    return tuple(t.name for t in tissues)


def label_names(tissues: Iterable[Tissue] = SCORED) -> dict[int, str]:
    """``label -> display name`` of ``tissues`` (default the scored ones), e.g. for ``Series.map``."""
    return {t.label: t.name for t in tissues}


def name_keys(tissues: Iterable[Tissue] = SCORED) -> dict[str, str]:
    """``display name -> key`` of ``tissues`` (default the scored ones), e.g. for glued names."""
    return {t.name: t.key for t in tissues}


def sort_names(values: Iterable[str]) -> list[str]:
    """Distinct tissue names in table order: the registry's names in label order, then the others.

    Parameters
    ----------
    values : iterable of str
        Names, possibly repeated; names not in the registry keep their first-seen order.

    Returns
    -------
    list of str
    """
    seen = list(dict.fromkeys(values))
    known = [t.name for t in ALL if t.name in seen]
    return known + [v for v in seen if v not in _BY_NAME]


@dataclass(frozen=True)
class DsegMapping:
    """How the labels of a segmentation map to the registry's tissues, read from its ``dseg.tsv``.

    Attributes
    ----------
    path : Path
        The ``dseg.tsv`` read.
    tissues : mapping of int to Tissue
        Segmentation value -> tissue; several values may map to one tissue (e.g. left and right).
    grey_matter : tuple of int
        Values of grey matter as one class (:data:`GREY_MATTER_NAMES`), to be split into
        subcortical and cortical GM by the reader of the image (:func:`qt1lib.segment.apply_dseg_mapping`).
    background : tuple of int
        Values named as background (:data:`BACKGROUND_NAMES`); they become 0.
    """

    path: Path
    tissues: Mapping[int, Tissue]
    grey_matter: tuple[int, ...] = ()
    background: tuple[int, ...] = ()

    @property
    def indices(self) -> frozenset[int]:
        """Every value the table names."""
        return frozenset(self.tissues) | frozenset(self.grey_matter) | frozenset(self.background)

    def describe(self) -> str:
        """One line: ``"1 GM (split), 2 WM, 3 CSF"``."""
        items = {**{i: t.name for i, t in self.tissues.items()}, **dict.fromkeys(self.grey_matter, "GM (split)"),
                 **dict.fromkeys(self.background, "background")}
        return ", ".join(f"{i} {items[i]}" for i in sorted(items))


_GREY_MATTER = {_fold(s) for s in GREY_MATTER_NAMES}
_BACKGROUND = {_fold(s) for s in BACKGROUND_NAMES}


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or not {"index", "name"} <= set(rows[0]):
        raise ValueError(f"{path} must be a tab-separated table with columns 'index' and 'name'")
    return rows


def read_dseg_mapping(path: str | Path) -> DsegMapping:
    """Read a BIDS ``dseg.tsv`` of any pipeline and map each of its labels to a tissue by name.

    BIDS 1.10 ("Derivatives: Imaging data types: Segmentations: Common image-derived labels") gives
    ``dseg.tsv`` the columns ``index`` (the value in the image) and ``name``, and optionally
    ``abbreviation``. Each row's ``name`` is looked up with :func:`by_any_name`, then, if unknown,
    its ``abbreviation``; a name of :data:`GREY_MATTER_NAMES` marks grey matter as one class and a
    name of :data:`BACKGROUND_NAMES` the background. Any other name is an error: a label that the
    study cannot place is never dropped silently.

    Parameters
    ----------
    path : path-like
        The ``dseg.tsv`` file.

    Returns
    -------
    DsegMapping

    Raises
    ------
    ValueError
        If the columns are missing, an index is not a non-negative integer or appears twice, or a
        name is neither a tissue, grey matter nor the background (the message names the file, the
        row and the accepted names).
    """
    path = Path(path)
    tissues: dict[int, Tissue] = {}
    grey: list[int] = []
    background: list[int] = []
    seen: set[int] = set()
    for row in _read_rows(path):
        name = row["name"] or ""
        try:
            index = int(row["index"])
        except (TypeError, ValueError):
            index = -1
        if index < 0:
            raise ValueError(f"{path}: index {row['index']!r} of {name!r} is not a non-negative integer")
        if index in seen:
            raise ValueError(f"{path}: index {index} appears twice")
        seen.add(index)
        spellings = [s for s in (name, row.get("abbreviation") or "") if s]
        folded = [_fold(s) for s in spellings]
        if any(f in _GREY_MATTER for f in folded):
            grey.append(index)
        elif any(f in _BACKGROUND for f in folded):
            background.append(index)
        elif any(f in _BY_ANY_NAME for f in folded):
            tissues[index] = next(_BY_ANY_NAME[f] for f in folded if f in _BY_ANY_NAME)
        else:
            known = ", ".join(f"{t.name} ({t.key}, {t.bids_label}, {t.twopool.name}, {', '.join(ALIASES[t])})"
                              for t in ALL)
            raise ValueError(
                f"{path}: index {index}: unknown tissue {name!r}; known tissues: {known}; grey matter as one "
                f"class: {', '.join(GREY_MATTER_NAMES)}; background: {', '.join(BACKGROUND_NAMES)}"
            )
    return DsegMapping(path, tissues, tuple(grey), tuple(background))


def read_dseg_tsv(path: str | Path) -> dict[int, Tissue]:
    """Read a BIDS ``dseg.tsv`` that follows this study's label convention (:data:`ALL`).

    Names may be any spelling of :func:`by_any_name` (a cohort written by :mod:`qt1lib.phantom`
    uses the BIDS labels ``WM``, ``sGM``, ``cGM``, ``CSF``). Use :func:`read_dseg_mapping` for a
    table with other labels.

    Parameters
    ----------
    path : path-like
        The ``dseg.tsv`` file.

    Returns
    -------
    dict of int to Tissue
        Segmentation value -> tissue, in the file's row order.

    Raises
    ------
    ValueError
        As :func:`read_dseg_mapping` (missing columns, an unknown name, an index twice), and when
        a row names grey matter as one class or the background, or an index differs from the
        registry's label (this study's label convention is fixed).
    """
    path = Path(path)
    mapping = read_dseg_mapping(path)
    others = mapping.grey_matter + mapping.background
    if others:
        raise ValueError(f"{path}: indices {list(others)} name grey matter as one class or the background, "
                         "which this study's label convention does not have")
    out: dict[int, Tissue] = {}
    for index, tissue in mapping.tissues.items():
        if index != tissue.label:
            raise ValueError(
                f"{path}: {tissue.bids_label!r} has index {index}, but the study labels {tissue.name} as {tissue.label} "
                f"({', '.join(f'{t.label} {t.name}' for t in ALL)})"
            )
        out[index] = tissue
    return out
