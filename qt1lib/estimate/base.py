"""One contract for every T1 estimator of MPnRAGE data, and one registry of them.

An estimator (:class:`T1Estimator`) is built from the acquisition protocol (every acquired
readout), the noise level of the images and its options, and maps complex GRE images to a
:class:`PosteriorT1`::

    estimator = make_estimator("map_exact_mp2rage", protocol, sigma, scale_prior="jeffreys")
    posterior = estimator.fit(gre, b1=b1_map)   # gre: (protocol.n_readouts, ...) complex

Each estimator class declares, as class attributes readable without building one
(:func:`estimator_class`):

``name``       registry key (and key of its map in the workflow);
``method``     estimation family recorded in :meth:`T1Estimator.parameters` (``"lut"``, ``"seed"``,
               ``"exact"``);
``readouts``   1-based readouts it combines: ``(1, 2)`` MP2RAGE, ``(1, 2, 3)`` MP3RAGE;
``b1``         B1+ handling: ``"none"`` (nominal flip angles), ``"map"`` (the measured B1+ map),
               ``"marginal"`` (the map, with its error marginalised);
``desc``       BIDS ``desc`` label of its derivative;
``label``      display name;
``posterior``  whether it gives a posterior standard deviation and a plausibility flag;
``defaults``   its options and their default values (the only option names it accepts);
``calls``      the qt1lib estimation modules it calls (e.g. ``"qt1lib.estimate.map"``);
``modules``    the modules whose source its output depends on: the modules that define the class
               and its estimator base classes, then ``calls``. A content-addressed cache
               (:mod:`qt1lib.store`) hashes these modules' source and their qt1lib imports
               transitively, so an estimator's module must not import unrelated estimators.

A new estimator is one file and one registration: subclass :class:`T1Estimator`, set the class
attributes, implement :meth:`T1Estimator._fit` (it receives validated arrays), decorate the class
with :func:`register_estimator` and import the file in :mod:`qt1lib.estimate`.

Conventions shared by every estimator: the protocol is renamed ``"acquisition"`` (source ``""``,
and any estimation view dropped) before use, so that the dictionaries and histograms cached per protocol are shared by subjects
whose sidecars describe the same acquisition under other names (an estimator with a fixed model of
its own, :mod:`qt1lib.estimate.seed_code`, uses that model instead and records both in
:meth:`T1Estimator.parameters`); a noise level of 0 (noise-free
data) is replaced by :data:`NOISE_FREE_SIGMA`; B1+ maps are clipped into the dictionaries' grid
:data:`qt1lib.estimate.lut.DEFAULT_B1_GRID`, and a voxel whose B1+ is NaN (not measured) gives NaN
in every B1-aware estimator.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..protocols import MPnRAGEProtocol
from ..validate import is_integer, require_number
from .lut import DEFAULT_B1_GRID

__all__ = [
    "PosteriorT1",
    "T1Estimator",
    "B1_HANDLING",
    "NOISE_FREE_SIGMA",
    "DEFAULT_ESTIMATORS",
    "clip_b1",
    "register_estimator",
    "make_estimator",
    "estimator_names",
    "estimator_class",
    "estimator_options",
]

#: Noise standard deviation (units of M0) used by the estimators when the data are noise-free
#: (the digital cohort with ``snr=inf``): the MAP estimators need ``sigma > 0``. 1e-4 M0 is 50
#: times below the seed's 0.005 (MASILab/map_t1_mapping ``scripts/params.yml``), so the
#: posterior is far narrower than any effect studied here.
NOISE_FREE_SIGMA = 1e-4

#: B1+ handling of an estimator: nominal flip angles, the measured B1+ map, or the map with its
#: error marginalised.
B1_HANDLING = ("none", "map", "marginal")

#: The estimators whose maps the workflow computes by default: the lookup table with and without
#: B1 correction, the seed's Monte-Carlo MAP (MP2RAGE, MP3RAGE), the exact MAP of MP2RAGE with the
#: measured B1 map and of MP3RAGE with B1 marginalised.
DEFAULT_ESTIMATORS: tuple[str, ...] = (
    "lut",
    "lut_b1",
    "map_seed_mp2rage",
    "map_seed_mp3rage",
    "map_exact_mp2rage",
    "map_exact_mp3rage",
)


@dataclass(frozen=True)
class PosteriorT1:
    """Posterior summary of T1 per voxel.

    Attributes
    ----------
    map : ndarray
        Maximum a posteriori T1 (s).
    mean : ndarray
        Posterior mean of T1 (s).
    std : ndarray
        Posterior standard deviation of T1 (s).
    valid : ndarray of bool
        The estimator's plausibility test passed (see the estimator); False where the input
        was not finite.

    All arrays have the voxel shape of the input; voxels with non-finite input hold NaN. A
    point estimator (lookup table) reports ``map`` = ``mean`` = its estimate, ``std`` NaN and
    ``valid`` where the estimate is finite.
    """

    map: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    valid: np.ndarray


def clip_b1(b1: np.ndarray | float) -> np.ndarray:
    """Relative B1+ clipped into the dictionaries' grid (:data:`qt1lib.estimate.lut.DEFAULT_B1_GRID`, 0.3..2.0).

    Parameters
    ----------
    b1 : array_like or float
        Relative B1+ (measured flip angle / nominal flip angle). NaN stays NaN.

    Returns
    -------
    ndarray
        ``b1`` as float, clipped.
    """
    lo, hi, _ = DEFAULT_B1_GRID
    return np.clip(np.asarray(b1, dtype=float), lo, hi)


def _check_noise_sigma(sigma: float) -> float:
    """``sigma`` as a float >= 0: anything ``float()`` converts (a 0-d array too) but a bool."""
    name = "sigma (noise std per real/imaginary part, image units)"
    try:
        value = None if isinstance(sigma, bool) else float(sigma)
    except (TypeError, ValueError):
        value = None
    if value is None:
        raise ValueError(f"{name} must be a number, got {sigma!r}")
    return require_number(name, value, low=0)


class T1Estimator(abc.ABC):
    """Contract of a T1 estimator of MPnRAGE data (module docstring).

    Parameters
    ----------
    protocol : MPnRAGEProtocol
        The acquisition with every acquired readout; the estimator takes its own view of
        :attr:`readouts` (an estimation view given here stands for its whole acquisition).
    sigma : float
        Noise standard deviation per real/imaginary part of the GRE images (image units; M0 = 1
        for the digital cohort). 0 means noise-free data and is replaced by
        :data:`NOISE_FREE_SIGMA`.
    **options
        The estimator's options (:attr:`defaults` lists their names and default values).

    Attributes
    ----------
    acquisition : MPnRAGEProtocol
        ``protocol`` renamed ``"acquisition"`` (source ``""``), every readout used (no view).
    view : MPnRAGEProtocol
        ``acquisition.view(readouts)``: the readouts the estimator combines.
    sigma : float
        The noise level the estimator uses (> 0).
    options : mapping
        Every option, defaults filled in (read-only).

    Raises
    ------
    TypeError
        ``protocol`` is not an :class:`~qt1lib.protocols.MPnRAGEProtocol`.
    ValueError
        The protocol lacks a readout of :attr:`readouts`; ``sigma`` is negative or not finite;
        an option name is not one of :attr:`defaults` or an option value is invalid.
    """

    name: ClassVar[str]
    method: ClassVar[str]
    readouts: ClassVar[tuple[int, ...]]
    b1: ClassVar[str]
    desc: ClassVar[str]
    label: ClassVar[str]
    posterior: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    calls: ClassVar[tuple[str, ...]] = ()
    modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "modules" not in cls.__dict__:  # derived unless the class body sets it
            defining = [c.__module__ for c in reversed(cls.__mro__) if issubclass(c, T1Estimator) and c is not T1Estimator]
            cls.modules = tuple(dict.fromkeys([*defining, *cls.calls]))
        if not isinstance(cls.defaults, MappingProxyType):
            cls.defaults = MappingProxyType(dict(cls.defaults))

    def __init__(self, protocol: MPnRAGEProtocol, sigma: float = 0.0, **options: Any) -> None:
        if not isinstance(protocol, MPnRAGEProtocol):
            raise TypeError(f"protocol must be an MPnRAGEProtocol, got {type(protocol).__name__}")
        if max(self.readouts) > protocol.n_readouts:
            raise ValueError(
                f"estimator {self.name!r} needs readouts {self.readouts}; protocol {protocol.name!r} has "
                f"{protocol.n_readouts} (readouts 1..{protocol.n_readouts})"
            )
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            accepted = sorted(self.defaults) or "none"
            raise ValueError(f"estimator {self.name!r} has no option {', '.join(map(repr, unknown))}; its options: {accepted}")
        sigma = _check_noise_sigma(sigma)
        self.sigma = sigma if sigma > 0 else NOISE_FREE_SIGMA
        self.options = MappingProxyType(self._check_options({**self.defaults, **options}))
        # one name for every subject's acquisition, so that the dictionaries and histograms
        # (cached per protocol) are built once for equal protocols read from different sidecars
        self.acquisition = protocol.with_changes(name="acquisition", source="", used_readouts=None)
        self.view = self.acquisition.view(self.readouts)

    # ------------------------------------------------------------------ hooks
    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate (and normalise) every option; ValueError naming the option otherwise."""
        return options

    def _parameters(self) -> dict[str, Any]:
        """The estimator's own entries of :meth:`parameters` (its options that change its output)."""
        return {}

    @abc.abstractmethod
    def _fit(self, gre: np.ndarray, b1: np.ndarray | None) -> PosteriorT1:
        """Estimate T1 from validated inputs.

        Parameters
        ----------
        gre : ndarray, shape (protocol.n_readouts, ...)
            GRE images of every readout (image units).
        b1 : ndarray or None
            Relative B1+ of the voxel shape ``gre.shape[1:]``, clipped into the B1 grid, when
            :attr:`b1` is not ``"none"``; else None.
        """

    # ------------------------------------------------------------------ public
    def fit(self, gre: np.ndarray, b1: np.ndarray | float | None = None) -> PosteriorT1:
        """T1 of every voxel.

        Parameters
        ----------
        gre : array_like, complex, shape (protocol.n_readouts, ...)
            GRE images of every acquired readout (image units).
        b1 : array_like or float, optional
            Measured relative B1+, broadcast to the voxel shape ``gre.shape[1:]`` and clipped
            into 0.3..2.0 (the dictionaries' grid). Needed when :attr:`b1` is ``"map"`` or
            ``"marginal"``; ignored when it is ``"none"``. NaN means not measured (as
            :func:`qt1lib.bids.read_mpnrage` marks it): those voxels are treated as non-finite
            input and give NaN.

        Returns
        -------
        PosteriorT1
            For point estimators (lookup tables) ``map`` = ``mean`` = the T1 read, ``std`` NaN
            and ``valid`` where finite.

        Raises
        ------
        ValueError
            ``gre`` does not have shape ``(protocol.n_readouts, ...)``; a B1-aware estimator
            gets no ``b1``, or a ``b1`` that does not broadcast to the voxel shape.
        """
        gre = np.asarray(gre)
        n = self.acquisition.n_readouts
        if gre.ndim < 1 or gre.shape[0] != n:
            raise ValueError(f"gre must have shape ({n}, ...): one image per readout of the protocol, got shape {gre.shape}")
        b1_used = None
        if self.b1 != "none":
            if b1 is None:
                raise ValueError(f"estimator {self.name!r} needs a B1+ map (b1)")
            b1_arr = clip_b1(b1)
            try:
                b1_used = np.broadcast_to(b1_arr, gre.shape[1:])
            except ValueError:
                raise ValueError(f"b1 of shape {b1_arr.shape} does not broadcast to the voxel shape {gre.shape[1:]}") from None
            unmeasured = np.isnan(b1_used)
            if unmeasured.any():  # B1 not measured: the voxel's input is not finite, so its T1 is NaN
                gre = np.where(unmeasured, np.nan, gre)
                b1_used = np.where(unmeasured, 1.0, b1_used)
        return self._fit(gre, b1_used)

    def parameters(self) -> dict[str, Any]:
        """The settings that change this estimator's output, JSON-ready (a cache key's parameters).

        Returns
        -------
        dict
            ``estimator`` (name), ``method``, ``readouts`` (list), ``b1`` (handling),
            ``b1_grid`` (the dictionaries' B1 grid; B1-aware estimators only), ``protocol``
            (:meth:`~qt1lib.protocols.MPnRAGEProtocol.describe` of the renamed acquisition), then
            the estimator's own entries (its options that change its output, and the noise level
            where it does). Options that do not change the output (a cache ``store``) are left out.
        """
        p: dict[str, Any] = {
            "estimator": self.name,
            "method": self.method,
            "readouts": list(self.readouts),
            "b1": self.b1,
        }
        if self.b1 != "none":
            p["b1_grid"] = list(DEFAULT_B1_GRID)
        p["protocol"] = self.acquisition.describe()
        p.update(self._parameters())
        return p

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, sigma={self.sigma!r}, options={dict(self.options)!r})"


# ============================================================================ registry
_REGISTRY: dict[str, type[T1Estimator]] = {}
_E = TypeVar("_E", bound=type[T1Estimator])


def register_estimator(cls: _E) -> _E:
    """Class decorator: add an estimator class to the registry under ``cls.name``.

    Checks the class attributes (module docstring): ``name`` a Python identifier, ``readouts``
    increasing 1-based readouts starting with 1 (at least two), ``b1`` one of
    :data:`B1_HANDLING`, ``desc`` alphanumeric (a BIDS label) and unique, ``label`` a string,
    ``posterior`` a bool. Registering another class under a taken name raises; registering the
    same class again (a module reload) replaces it.

    Returns
    -------
    type
        ``cls``, unchanged.
    """
    if not (isinstance(cls, type) and issubclass(cls, T1Estimator)):
        raise TypeError(f"register_estimator expects a T1Estimator subclass, got {cls!r}")
    if getattr(cls, "__abstractmethods__", None):
        raise TypeError(f"{cls.__name__} does not implement {sorted(cls.__abstractmethods__)}")
    for attr in ("name", "method", "readouts", "b1", "desc", "label"):
        if not hasattr(cls, attr):
            raise TypeError(f"estimator class {cls.__name__} lacks the class attribute {attr!r}")
    name = cls.name
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"{cls.__name__}.name must be a Python identifier, got {name!r}")
    readouts = cls.readouts
    if not (
        isinstance(readouts, tuple) and len(readouts) >= 2 and readouts[0] == 1
        and all(is_integer(r, builtin=True) for r in readouts)
        and all(b > a for a, b in zip(readouts, readouts[1:]))
    ):
        raise ValueError(f"{cls.__name__}.readouts must be increasing 1-based readouts starting with 1, got {readouts!r}")
    if cls.b1 not in B1_HANDLING:
        raise ValueError(f"{cls.__name__}.b1 must be one of {B1_HANDLING}, got {cls.b1!r}")
    if not (isinstance(cls.desc, str) and cls.desc.isalnum() and cls.desc.isascii()):
        raise ValueError(f"{cls.__name__}.desc must be an alphanumeric BIDS label, got {cls.desc!r}")
    if not isinstance(cls.label, str) or not isinstance(cls.method, str):
        raise ValueError(f"{cls.__name__}.label and .method must be strings")
    if not isinstance(cls.posterior, bool):
        raise ValueError(f"{cls.__name__}.posterior must be a bool, got {cls.posterior!r}")

    def same(other: type) -> bool:
        return other is cls or (other.__module__, other.__qualname__) == (cls.__module__, cls.__qualname__)

    old = _REGISTRY.get(name)
    if old is not None and not same(old):
        raise ValueError(f"estimator name {name!r} is taken by {old.__module__}.{old.__qualname__}")
    for other in _REGISTRY.values():
        if other.name != name and other.desc == cls.desc:
            raise ValueError(f"desc {cls.desc!r} of {cls.__name__} is taken by estimator {other.name!r}")
    _REGISTRY[name] = cls
    return cls


def estimator_names() -> tuple[str, ...]:
    """Names of the registered estimators, in registration order."""
    return tuple(_REGISTRY)


def estimator_class(name: str) -> type[T1Estimator]:
    """The registered class of estimator ``name`` (its class attributes describe it).

    Raises
    ------
    ValueError
        Unknown name; the message names the known estimators.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown estimator {name!r}; expected one of {sorted(_REGISTRY)}") from None


def make_estimator(name: str, protocol: MPnRAGEProtocol, sigma: float = 0.0, **options: Any) -> T1Estimator:
    """Build the registered estimator ``name`` (see :class:`T1Estimator` for the arguments).

    Raises
    ------
    ValueError
        Unknown name (naming the known estimators), unknown option (naming it and the accepted
        ones), invalid option value, a readout the protocol lacks, invalid ``sigma``.
    """
    return estimator_class(name)(protocol, sigma, **options)


def estimator_options(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``settings`` that estimator ``name`` accepts as options.

    For callers that hold one set of settings for several estimators (e.g. ``b1_sd``,
    ``scale_prior`` and the seed MAP's settings of a study configuration): each estimator takes
    the options it declares in :attr:`T1Estimator.defaults`.

    Parameters
    ----------
    name : str
        A registered estimator.
    settings : mapping
        Option names and values, for any estimators.

    Returns
    -------
    dict
    """
    accepted = estimator_class(name).defaults
    return {k: v for k, v in settings.items() if k in accepted}


class _Identity:
    """Hashable handle of an object, equal only to a handle of the same object (lru_cache key of a store)."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Identity) and other.obj is self.obj


def _check_store(store: Any) -> Any:
    """A store must offer ``get_or_compute(step, parameters, compute, codec, *, inputs, modules)``."""
    if store is not None and not callable(getattr(store, "get_or_compute", None)):
        raise ValueError(f"store must be None or an object with a get_or_compute method, got {type(store).__name__}")
    return store
