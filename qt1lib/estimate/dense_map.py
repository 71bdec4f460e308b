"""The exact MAP on every dense node of the dictionary, in torch: the path for a GPU.

The log posterior of :func:`qt1lib.estimate.map.exact_log_likelihood` is, on any set of T1 nodes, one
matrix product of the voxels' ``n (n + 1) / 2 + 1`` data numbers (:func:`~qt1lib.estimate.quadratic_map.data_products`)
with the quadratic-form dictionary's columns (:func:`~qt1lib.estimate.quadratic_map.quadratic_dictionary`;
the identity is stated in :mod:`qt1lib.estimate.quadratic_map`). The CPU paths spend their effort on
evaluating few nodes per voxel; a GPU does the opposite well: this module evaluates the posterior on
*all* ``(n_coarse - 1) refine + 1`` dense nodes (2049 by default, a step ``h`` of 0.22 % in T1) with
one matrix product per B1 node of a chunk, in float64, and needs no case analysis:

1. *Log posterior* on the dense nodes, per Gauss-Hermite node of the B1 marginalisation (the grid
   evaluation's quadrature, :meth:`~qt1lib.estimate.map.ExactMAPModel.fit`), linear in B1 between the
   two bracketing B1 nodes of the dictionary (as the grid evaluation's signals are); the quadrature
   nodes combined by log-sum-exp.
2. *Moments* of T1 by the trapezoidal rule in ``u = log T1`` with Gregory's end corrections over
   the whole prior support (:func:`~qt1lib.estimate.map._gregory_weights`; Jacobian ``dT1 = T1 du``):
   the integrand is smooth on the support, so a posterior cut by a prior end needs no special case,
   and the rule's error on a peak of std ``s`` is about ``2 exp(-2 pi^2 (s/h)^2)`` (1e-13 for
   ``s >= 1.25 h``; Poisson summation, see :class:`~qt1lib.estimate.map.ExactMAPModel`).
3. *MAP*: the best dense node, then Newton's method with the tabulated slope and curvature in ``u``
   at the nearest node (for the quadrature's mixture, the derivatives of the log of the mixture);
   the last step starts within half a dense step of the maximum, so its error is about
   ``|l'''/l''| h^2 / 8``.
4. *Goodness of fit*: the largest data projection ``|g.y|^2 / ||g||^2`` over the dense nodes and the
   quadrature nodes (the vertex of the parabola through the best node and its neighbours), as the grid
   evaluation takes it over its nodes.
5. *Left to the grid evaluation* (:meth:`DenseEvaluator.fit` returns them): posteriors whose std in
   ``u``, or whose curvature at an interior MAP, is under 1.25 dense steps (SNR in the thousands:
   the dense nodes cannot resolve them); with B1 marginalised, those where any quadrature node's
   own posterior is under ``_MIXTURE_FACTOR`` times that; posteriors with density at a prior end
   (above ``exp(_END_DROP)`` of the maximum) narrower than ``_END_STEPS`` dense steps (the end
   correction's error grows as the fourth power of the step over the width); and voxels where
   Newton's method did not settle.

On the CPU this path is slower than the table and the quadratic-form evaluations (it evaluates
about 30 times more nodes); it exists for CUDA, where the same code runs unchanged and in float64,
so that the numbers of a GPU and of the CPU agree to rounding (tests/test_dense_map.py checks the
CPU run against the grid evaluation within the bounds of :class:`~qt1lib.estimate.map.ExactMAPModel`,
and a CUDA run against the CPU run where a GPU is present).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .quadratic_map import _b1_tables, data_products, quadratic_dictionary

__all__ = ["DenseEvaluator", "resolve_device", "dense_chunk"]

#: Newton iterations of the MAP search.
_NEWTON_STEPS = 2
#: Posteriors narrower than this many dense steps go to the grid evaluation.
_MIN_STEPS = 1.25
#: With B1 marginalised, the narrowest quadrature node's posterior must be this many times wider (the
#: mixture's peaks are that node's: narrower ones go to the grid evaluation).
_MIXTURE_FACTOR = 2.0
#: A posterior whose log density at a prior end lies above ``_END_DROP`` (from its maximum) must be at least
#: ``_END_STEPS`` dense steps wide in ``u`` (Gregory's end correction is O(h^4) in the integrand's derivatives).
_END_DROP, _END_STEPS = -18.0, 8.0


@lru_cache(maxsize=1)
def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str | None) -> str:
    """The torch device of the dense evaluation: ``device``, or ``"cuda"`` where ``torch.cuda.is_available()``, else ``"cpu"``.

    Raises
    ------
    ValueError
        If ``device`` is not ``None``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``, or names CUDA where torch has none.
    """
    if device is None:
        return "cuda" if _cuda_available() else "cpu"
    text = str(device)
    is_cuda = text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit())
    if text != "cpu" and not is_cuda:
        raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if is_cuda and not _cuda_available():
        raise ValueError(f"device {device!r} asked for, but torch.cuda.is_available() is False on this machine")
    return text


def dense_chunk(device: str) -> int:
    """Voxels per chunk of the dense evaluation: 16 kB per voxel for each array over the 2049 dense nodes
    (float64) that a chunk holds, one per B1 quadrature node and about four more, so 32768 on a GPU (about
    2.6 GB with one node, 4.7 GB with five) and 2048 on the CPU (a guess on a GPU until measured)."""
    return 32768 if device.startswith("cuda") else 2048


class DenseEvaluator:
    """The posterior summaries of the module docstring for one :class:`~qt1lib.estimate.map.ExactMAPModel`.

    Parameters
    ----------
    model : ExactMAPModel
        Supplies the protocol, noise level, prior and nodes (its attributes of the same names).
    with_b1 : bool
        The dictionary on the model's B1 grid (a B1 map given) or at B1 = 1.
    device : str
        Torch device (:func:`resolve_device`).
    """

    def __init__(self, model, with_b1: bool, device: str):
        import torch

        from .map import _gregory_weights

        self.torch = torch
        self.model = model
        self.device = torch.device(device)
        nodes = model.b1_nodes if with_b1 else (1.0,)
        d = quadratic_dictionary(model.protocol, model.t1_range, model.n_coarse, model.refine, nodes, model.scale_prior)
        as_tensor = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float64, device=self.device)  # noqa: E731
        self.u = d.u
        self.h = float(d.u[1] - d.u[0])
        self.n_b1 = len(d.b1)
        values = np.transpose(d.values, (0, 2, 1))  # (n_b1, n_cols, n_dense): the matrix products' side
        if self.n_b1 >= 4:  # cubic Hermite in B1: the values and step x their B1 derivative at each node
            nodal, _ = _b1_tables(values, d.b1)
            step = float(d.b1[1] - d.b1[0])
            values = np.concatenate([values, step * nodal[..., values.shape[-1] : 2 * values.shape[-1]]], axis=1)
        self.values = as_tensor(values)  # (n_b1, n_cols or 2 n_cols, n_dense)
        self.tables = as_tensor(np.stack([d.slopes, d.curvatures], axis=2))  # (n_b1, n_dense, 2, n_cols): gathers
        t1 = np.exp(d.u)
        base = self.h * _gregory_weights(len(d.u)) * t1  # Jacobian dT1 = T1 du
        # columns: normalisation, sum T1, sum T1^2, sum u, sum u^2
        self.weights = as_tensor(np.stack([base, base * t1, base * t1**2, base * d.u, base * d.u**2], axis=1))

    # ------------------------------------------------------------ log posterior on the dense nodes
    def _loglik(self, mvec, j: np.ndarray, w):
        """``mvec @ values[B1]`` (m, n_dense) between the B1 nodes ``j`` and ``j + 1`` (``j`` non-decreasing), at the
        fraction ``w`` of the step: cubic Hermite interpolation from the nodes' values and B1 derivatives (those of the
        not-a-knot spline in B1, :func:`~qt1lib.estimate.quadratic_map._b1_tables`), error O(step^4); linear below 4 B1
        nodes. Linear interpolation of the quadratic form (the quadratic-form evaluation's) is O(step^2): about 0.1 in
        the log-likelihood at an SNR of a few hundred, enough to move the weights of the B1 quadrature's nodes."""
        torch = self.torch
        if self.n_b1 == 1:
            return mvec @ self.values[0]
        if self.values.shape[1] == 2 * mvec.shape[1]:
            w2, w3 = w * w, w * w * w
            basis = (2 * w3 - 3 * w2 + 1, w3 - 2 * w2 + w, 3 * w2 - 2 * w3, w3 - w2)  # h00, h10, h01, h11
        else:
            basis = None
        out = torch.empty((mvec.shape[0], self.values.shape[-1]), dtype=torch.float64, device=self.device)
        starts = np.flatnonzero(np.diff(j, prepend=j[0] - 1))
        ends = list(starts[1:]) + [len(j)]
        for begin, end in zip(starts.tolist(), ends):  # loop over the B1 nodes present in the chunk
            jj = int(j[begin])
            sel = slice(begin, end)
            if basis is None:
                weighted = torch.cat([(1.0 - w[sel])[:, None] * mvec[sel], w[sel][:, None] * mvec[sel]], dim=1)
            else:
                weighted = torch.cat([b[sel][:, None] * mvec[sel] for b in basis], dim=1)
            out[sel] = weighted @ self.values[jj : jj + 2].reshape(-1, self.values.shape[-1])
        return out

    def _at_nodes(self, mvec, node, j, w):
        """Slope and curvature in ``u`` of the log-likelihood at dense node ``node`` (m,) per voxel, linear in B1: (m, 2)."""
        jt = self.torch.as_tensor(j, device=self.device)
        lo = self.tables[jt, node]  # (m, 2, n_cols)
        if self.n_b1 > 1:
            hi = self.tables[jt + 1, node]
            lo = lo + w[:, None, None] * (hi - lo)
        return (lo * mvec[:, None, :]).sum(-1)

    def _std_u(self, ll):
        """The posterior std in ``u`` of log densities ``ll`` (m, n_dense)."""
        mom = self.torch.exp(ll - ll.max(dim=1).values[:, None]) @ self.weights[:, [0, 3, 4]]
        mu = mom[:, 1] / mom[:, 0]
        return self.torch.sqrt(self.torch.clamp(mom[:, 2] / mom[:, 0] - mu**2, min=0.0))

    # ------------------------------------------------------------ fit
    def fit(self, y: np.ndarray, positions, log_weights: np.ndarray) -> tuple[np.ndarray, ...]:
        """Posterior summaries of one chunk of voxels (sorted by B1 where a B1 map is given).

        Parameters
        ----------
        y : ndarray, shape (m, n_used)
            Complex data.
        positions : list of (ndarray, ndarray)
            Per B1 quadrature node, the lower B1 node index and weight of each voxel.
        log_weights : ndarray
            Log weights of the quadrature nodes.

        Returns
        -------
        map, mean, std : ndarray, shape (m,)
            T1 (s); NaN where ``rest``.
        proj_max : ndarray, shape (m,)
            The largest ``|g.y|^2 / ||g||^2`` (for the goodness-of-fit test).
        rest : ndarray of bool, shape (m,)
            Voxels left to the grid evaluation.
        """
        torch, model = self.torch, self.model
        m = y.shape[0]
        nan = np.full(m, np.nan)
        if m == 0:
            return nan, nan.copy(), nan.copy(), nan.copy(), np.zeros(0, dtype=bool)
        mvec = torch.as_tensor(data_products(y, model.sigma), dtype=torch.float64, device=self.device)
        data_only = mvec.clone()
        data_only[:, -1] = 0.0  # the prior column removed: the data projection alone
        ws = [torch.as_tensor(w, dtype=torch.float64, device=self.device) for _, w in positions]
        ll, per_node = None, []
        narrowest = torch.full((m,), torch.inf, dtype=torch.float64, device=self.device)
        proj = torch.full((m,), -torch.inf, dtype=torch.float64, device=self.device)
        rows = torch.arange(m, device=self.device)
        n_dense = self.values.shape[-1]
        for (j, _), w, lw in zip(positions, ws, log_weights):  # loop over the B1 quadrature nodes
            llq = self._loglik(mvec, j, w)
            data = self._loglik(data_only, j, w) if model.scale_prior == "flat" else llq
            best = torch.argmax(data, dim=1).clamp(1, n_dense - 2)
            lm, l0, lp = data[rows, best - 1], data[rows, best], data[rows, best + 1]
            curv = lp - 2 * l0 + lm
            vertex = torch.where(curv < 0, l0 - (lp - lm) ** 2 / (8 * curv), l0)
            proj = torch.maximum(proj, torch.maximum(vertex, data.max(dim=1).values))
            if len(positions) > 1:  # this quadrature node's own width in u
                narrowest = torch.minimum(narrowest, self._std_u(llq))
            llq = llq + float(lw)
            per_node.append(llq)
            ll = llq if ll is None else torch.logaddexp(ll, llq)
        top, k = ll.max(dim=1)
        mom = torch.exp(ll - top[:, None]) @ self.weights
        z = mom[:, 0]
        mean = mom[:, 1] / z
        std = torch.sqrt(torch.clamp(mom[:, 2] / z - mean**2, min=0.0))
        mu = mom[:, 3] / z
        std_u = torch.minimum(torch.sqrt(torch.clamp(mom[:, 4] / z - mu**2, min=0.0)), narrowest / _MIXTURE_FACTOR)
        # a posterior with density at a prior end: the end rule needs it wide against the dense step
        cut = (ll[:, 0] - top > _END_DROP) | (ll[:, -1] - top > _END_DROP)

        # the MAP: Newton's method from the best dense node, on the log of the quadrature's mixture
        u_nodes = torch.as_tensor(self.u, dtype=torch.float64, device=self.device)
        u = u_nodes[k]
        for _ in range(_NEWTON_STEPS):  # Newton iterations (vectorised over voxels)
            node = torch.clamp(torch.round((u - float(self.u[0])) / self.h).long(), 0, n_dense - 1)
            parts = torch.stack([self._at_nodes(mvec, node, j, w) for (j, _), w in zip(positions, ws)])  # (q, m, 2)
            at_node = torch.stack([llq[rows, node] for llq in per_node])  # the interpolated values, prior weights in
            pi = torch.softmax(at_node, dim=0)
            slope = (pi * parts[:, :, 0]).sum(0)
            curv = (pi * (parts[:, :, 1] + parts[:, :, 0] ** 2)).sum(0) - slope**2
            step = torch.where(curv < 0, -slope / torch.where(curv < 0, curv, -1.0), torch.sign(slope) * self.h)
            step = torch.clamp(torch.nan_to_num(step), -self.h, self.h)
            u_new = torch.clamp(u_nodes[node] + step, model.u_min, model.u_max)
            settled = torch.abs(u_new - u_nodes[node]) <= 0.5 * self.h * (1 + 1e-9)
            u = u_new
        interior = (u > model.u_min) & (u < model.u_max)
        too_narrow = (std_u < _MIN_STEPS * self.h) | (interior & (curv * (_MIN_STEPS * self.h) ** 2 < -1.0))
        rest = ~settled | too_narrow | (cut & (std_u < _END_STEPS * self.h)) | ~torch.isfinite(std)
        t1_map = torch.exp(u)
        out = [t.cpu().numpy() for t in (t1_map, mean, std, 2 * model.sigma**2 * proj, rest)]
        for arr in out[:3]:  # loop over the three T1 summaries
            arr[out[4]] = np.nan
        return tuple(out)
