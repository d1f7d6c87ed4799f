"""Exact baseline Shapley values for a LightGBM booster with one reference row.

Explains f(x_new) - f(x_old) in raw-margin space, with the old snapshot as the only background
row (interventional / baseline Shapley). For one tree and one leaf with value v, split the
features on the leaf's path into

- A: features where only x_new satisfies the path's conditions,
- B: features where only x_old satisfies them,
- the rest, which both must satisfy (otherwise no hybrid of the two rows reaches the leaf).

The leaf's game is u(S) = v * [A ⊆ S and B ∩ S = ∅], whose Shapley values are
v * (|A|-1)! |B|! / (|A|+|B|)! for each feature in A and -v * |A|! (|B|-1)! / (|A|+|B|)! for each
feature in B. A feature whose value is the same in both rows routes both rows the same way at
every split, so it is never in A or B and gets exactly 0; the values sum to f(x_new) - f(x_old)
per leaf, hence per model.

The booster is compiled once per model into flat numpy arrays (one entry per split node), and a
small numba kernel walks each tree once per pair, branching only where x_new and x_old part
ways on a feature not yet assigned to A or B: the leaves it reaches are exactly those with a
non-zero term. Missing values and zeros are routed as LightGBM routes them (`missing_type`,
`default_left`), so the result matches `booster.predict(raw_score=True)` to rounding.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

log = logging.getLogger(__name__)

# LightGBM's kZeroThreshold: |x| <= this counts as zero for missing_type "Zero".
ZERO_THRESHOLD = 1e-35
_MISSING_CODES = {"None": 0, "Zero": 1, "NaN": 2}


@dataclass(frozen=True)
class CompiledTrees:
    """A booster flattened into node arrays; built once per model by `compile_booster`.

    Children: a value >= 0 is a split node's index, a value < 0 is leaf number -value - 1.
    """

    feature_names: tuple[str, ...]
    roots: np.ndarray  # (T,) root of each tree with at least one split
    split_feature: np.ndarray  # (N,) column index into feature_names
    threshold: np.ndarray  # (N,) go left when value <= threshold
    default_left: np.ndarray  # (N,) bool: where missing (or zero, for missing_type Zero) goes
    missing_type: np.ndarray  # (N,) 0 None, 1 Zero, 2 NaN
    left: np.ndarray  # (N,)
    right: np.ndarray  # (N,)
    leaf_value: np.ndarray  # (L,)
    constant: float  # sum of single-leaf trees (never attributed)
    max_depth: int
    n_trees: int

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def compile_booster(booster, feature_names: list[str] | None = None) -> CompiledTrees:
    """Flatten a LightGBM booster (numeric splits only) into arrays for `attribute`.

    `feature_names` (default: the booster's own) fixes the column order of the inputs; every name
    the booster uses must be among them. Raises ValueError for categorical splits, linear trees
    and multi-class models, where this exact method does not apply.
    """
    dump = booster.dump_model()
    if dump.get("num_class", 1) != 1 or dump.get("num_tree_per_iteration", 1) != 1:
        raise ValueError(
            "attribution: only single-output boosters (binary/regression) are supported; "
            f"this model has num_class={dump.get('num_class')}"
        )
    model_names = list(dump["feature_names"])
    names = list(feature_names) if feature_names is not None else model_names
    position = {n: i for i, n in enumerate(names)}

    feat: list[int] = []
    thr: list[float] = []
    dl: list[bool] = []
    mt: list[int] = []
    left: list[int] = []
    right: list[int] = []
    leaf_values: list[float] = []
    roots: list[int] = []
    constant = 0.0
    max_depth = 0

    for t, info in enumerate(dump["tree_info"]):
        root = info["tree_structure"]
        if "split_feature" not in root:
            constant += float(root["leaf_value"])
            continue

        def visit(node: dict, depth: int, t: int = t) -> int:
            nonlocal max_depth
            if "split_feature" not in node:
                if "leaf_coeff" in node or "leaf_features" in node:
                    raise ValueError(
                        f"attribution: tree {t} is a linear tree (linear_tree=True); not supported"
                    )
                leaf_values.append(float(node["leaf_value"]))
                max_depth = max(max_depth, depth)
                return -len(leaf_values)
            name = model_names[node["split_feature"]]
            if node.get("decision_type", "<=") != "<=":
                raise ValueError(
                    f"attribution: tree {t} has a categorical split on {name!r} "
                    f"(decision_type {node['decision_type']!r}); baseline Shapley is exact only "
                    "for numeric splits: encode categoricals as numbers before training"
                )
            if name not in position:
                raise ValueError(
                    f"attribution: the model splits on {name!r}, which is not among the given feature names"
                )
            i = len(feat)
            feat.append(position[name])
            thr.append(float(node["threshold"]))
            dl.append(bool(node["default_left"]))
            mt.append(_MISSING_CODES[str(node.get("missing_type", "None"))])
            left.append(0)
            right.append(0)
            left[i] = visit(node["left_child"], depth + 1)
            right[i] = visit(node["right_child"], depth + 1)
            return i

        roots.append(visit(root, 0))

    return CompiledTrees(
        feature_names=tuple(names),
        roots=np.array(roots, dtype=np.int64),
        split_feature=np.array(feat, dtype=np.int64),
        threshold=np.array(thr, dtype=np.float64),
        default_left=np.array(dl, dtype=np.bool_),
        missing_type=np.array(mt, dtype=np.int64),
        left=np.array(left, dtype=np.int64),
        right=np.array(right, dtype=np.int64),
        leaf_value=np.array(leaf_values, dtype=np.float64),
        constant=constant,
        max_depth=max_depth,
        n_trees=len(dump["tree_info"]),
    )


def _weight_tables(d: int) -> tuple[np.ndarray, np.ndarray]:
    """wa[a, b] = (a-1)! b! / (a+b)!  and  wb[a, b] = a! (b-1)! / (a+b)!  (0 where undefined)."""
    wa = np.zeros((d + 1, d + 1))
    wb = np.zeros((d + 1, d + 1))
    for a in range(d + 1):
        for b in range(d + 1 - a):
            n = math.factorial(a + b)
            if a >= 1:
                wa[a, b] = math.factorial(a - 1) * math.factorial(b) / n
            if b >= 1:
                wb[a, b] = math.factorial(a) * math.factorial(b - 1) / n
    return wa, wb


@njit(nogil=True, cache=True)
def _goes_left(v, thr, default_left, missing_type):
    # LightGBM's NumericalDecision: NaN becomes 0 unless missing_type is NaN; then missing
    # (NaN type) or zero (Zero type) goes the default way; otherwise value <= threshold.
    if np.isnan(v):
        if missing_type == 2:
            return default_left
        v = 0.0
    if missing_type == 1 and abs(v) <= 1e-35:
        return default_left
    return v <= thr


@njit(nogil=True, cache=True)
def _holds(features, n, j):
    """Whether feature j is among the first n entries of a path's feature set."""
    for k in range(n):  # noqa: SIM110 (numba compiles a loop, not any() over a generator)
        if features[k] == j:
            return True
    return False


@njit(nogil=True, cache=True)
def _shapley_kernel(xn, xo, roots, feat, thr, dl, mt, left, right, leaf_value, wa, wb, depth, out):
    n_pairs = xn.shape[0]
    d = depth + 1
    # Pending branches (x_old's side of a split where the rows part ways): at most one per level.
    st_node = np.empty(d, np.int64)
    st_na = np.empty(d, np.int64)
    st_nb = np.empty(d, np.int64)
    st_a = np.empty((d, d), np.int64)
    st_b = np.empty((d, d), np.int64)
    cur_a = np.empty(d, np.int64)
    cur_b = np.empty(d, np.int64)
    for p in range(n_pairs):
        for t in range(roots.shape[0]):
            node = roots[t]
            na = 0
            nb = 0
            top = -1
            while True:
                if node < 0:
                    if na + nb > 0:
                        v = leaf_value[-node - 1]
                        ca = v * wa[na, nb]
                        cb = v * wb[na, nb]
                        for k in range(na):
                            out[p, cur_a[k]] += ca
                        for k in range(nb):
                            out[p, cur_b[k]] -= cb
                    if top < 0:
                        break
                    node = st_node[top]
                    na = st_na[top]
                    nb = st_nb[top]
                    for k in range(na):
                        cur_a[k] = st_a[top, k]
                    for k in range(nb):
                        cur_b[k] = st_b[top, k]
                    top -= 1
                    continue
                j = feat[node]
                gx = _goes_left(xn[p, j], thr[node], dl[node], mt[node])
                gr = _goes_left(xo[p, j], thr[node], dl[node], mt[node])
                if gx == gr:
                    node = left[node] if gx else right[node]
                    continue
                if _holds(cur_a, na, j):
                    node = left[node] if gx else right[node]
                    continue
                if _holds(cur_b, nb, j):
                    node = left[node] if gr else right[node]
                    continue
                # Rows part ways on a new feature: x_old's side waits on the stack with j in B,
                # x_new's side goes on with j in A.
                top += 1
                st_node[top] = left[node] if gr else right[node]
                st_na[top] = na
                st_nb[top] = nb + 1
                for k in range(na):
                    st_a[top, k] = cur_a[k]
                for k in range(nb):
                    st_b[top, k] = cur_b[k]
                st_b[top, nb] = j
                cur_a[na] = j
                na += 1
                node = left[node] if gx else right[node]


@njit(nogil=True, cache=True)
def _margin_kernel(x, roots, feat, thr, dl, mt, left, right, leaf_value, out):
    for p in range(x.shape[0]):
        s = 0.0
        for t in range(roots.shape[0]):
            node = roots[t]
            while node >= 0:
                j = feat[node]
                node = (
                    left[node]
                    if _goes_left(x[p, j], thr[node], dl[node], mt[node])
                    else right[node]
                )
            s += leaf_value[-node - 1]
        out[p] += s


def _as_matrix(x, names: tuple[str, ...], what: str) -> np.ndarray:
    if hasattr(x, "columns"):
        absent = [n for n in names if n not in x.columns]
        if absent:
            raise ValueError(
                f"attribution: {what} lacks feature columns {absent[:5]} ({len(absent)} missing)"
            )
        x = x[list(names)].to_numpy(dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(
            f"attribution: {what} must have {len(names)} feature columns, got shape {x.shape}"
        )
    return np.ascontiguousarray(x)


def _blocks(n: int, n_threads: int) -> list[tuple[int, int]]:
    step = max(1, -(-n // max(1, n_threads)))
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _run_blocks(run, n: int, n_threads: int) -> None:
    """Call `run(bounds)` on each row block, on threads when there is more than one block
    (the numba kernels release the GIL, so the blocks run in parallel)."""
    blocks = _blocks(n, n_threads)
    if len(blocks) > 1:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            list(pool.map(run, blocks))
    else:
        run(blocks[0])


def attribute(ct: CompiledTrees, x_new, x_old, n_threads: int = 1) -> np.ndarray:
    """Baseline Shapley values of f(x_new) - f(x_old) in raw margin, one row per pair.

    `x_new`, `x_old`: arrays (P, F) or frames holding the compiled feature names as columns; row
    i of x_new is explained against row i of x_old. Returns (P, F) float64 whose rows sum to the
    raw-margin change; a feature equal in both rows (NaN counts as equal to NaN) gets exactly 0.
    """
    xn = _as_matrix(x_new, ct.feature_names, "x_new")
    xo = _as_matrix(x_old, ct.feature_names, "x_old")
    if xn.shape != xo.shape:
        raise ValueError(
            f"attribution: x_new {xn.shape} and x_old {xo.shape} must have the same shape"
        )
    out = np.zeros(xn.shape)
    if xn.shape[0] == 0 or len(ct.roots) == 0:
        return out
    wa, wb = _weight_tables(ct.max_depth)

    def run(bounds: tuple[int, int]) -> None:
        s, e = bounds
        _shapley_kernel(
            xn[s:e],
            xo[s:e],
            ct.roots,
            ct.split_feature,
            ct.threshold,
            ct.default_left,
            ct.missing_type,
            ct.left,
            ct.right,
            ct.leaf_value,
            wa,
            wb,
            ct.max_depth,
            out[s:e],
        )

    _run_blocks(run, xn.shape[0], n_threads)
    return out


def raw_margin(ct: CompiledTrees, x, n_threads: int = 1) -> np.ndarray:
    """Raw margin (sum of leaf values) from the compiled trees; equals booster.predict(raw_score=True)."""
    xm = _as_matrix(x, ct.feature_names, "x")
    out = np.full(xm.shape[0], ct.constant)
    if xm.shape[0] == 0 or len(ct.roots) == 0:
        return out

    def run(bounds: tuple[int, int]) -> None:
        s, e = bounds
        _margin_kernel(
            xm[s:e],
            ct.roots,
            ct.split_feature,
            ct.threshold,
            ct.default_left,
            ct.missing_type,
            ct.left,
            ct.right,
            ct.leaf_value,
            out[s:e],
        )

    _run_blocks(run, xm.shape[0], n_threads)
    return out
