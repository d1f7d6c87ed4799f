"""Ids and opaque tokens of the simulated tables, and the token pools all chunks share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contracts import LENDER_TYPES
from features.ids import id_key
from features.world.parameters import IP_POOL, LENDER_POOL


def pseudonymise_many(
    source_ids: list[str], prefix: str = "u", key: bytes | None = None
) -> list[str]:
    """`features.ids.pseudonymise` for many ids at once: the same HMAC-SHA256, with the keyed
    inner and outer hash states computed once and copied per id (several times faster)."""
    key = id_key() if key is None else key
    try:  # CPython's own SHA-256 copies its state faster than OpenSSL's
        from _sha2 import sha256 as _sha256  # Python >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256 as _sha256  # Python 3.11
        except ImportError:
            _sha256 = hashlib.sha256
    if len(key) > 64:  # the HMAC rule for keys longer than the block size
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner = _sha256(bytes(b ^ 0x36 for b in key))
    outer = _sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for s in source_ids:  # one C-level hash per id; no faster pure-numpy SHA-256 exists
        h = inner.copy()
        h.update(s.encode())
        o = outer.copy()
        o.update(h.digest())
        out.append(f"{prefix}_{o.hexdigest()[:16]}")
    return out


def tokens(rng: np.random.Generator, n: int, prefix: str) -> pa.Array:
    """Opaque random tokens like `d_3fa2...` (64 random bits in hex)."""
    vals = rng.integers(0, 2**63, size=n, dtype=np.int64)
    return pa.array([f"{prefix}_{v:016x}" for v in vals.tolist()], pa.string())


def as_str(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """A pandas string column from an arrow array (an empty one too)."""
    return pd.Series(arr, dtype="str") if len(arr) else pd.Series([], dtype="str")


def join_ids(base: pa.Array, idx: np.ndarray, sep: str) -> pa.Array:
    """`base[i] + sep + str(idx[i])` without a Python loop."""
    return pc.binary_join_element_wise(base, pc.cast(pa.array(idx, pa.int64()), pa.string()), sep)


@dataclass(frozen=True)
class Pools:
    """Lenders (token and type) and IP prefixes every chunk draws from."""

    lender_token: pa.Array
    lender_type: np.ndarray  # index into LENDER_TYPES
    lenders_by_type: list[np.ndarray]  # per lender type, the pool positions of that type
    ip_token: pa.Array


def draw_pools(rng: np.random.Generator) -> Pools:
    types = rng.choice(len(LENDER_TYPES), size=LENDER_POOL, p=[0.25, 0.25, 0.35, 0.15])
    return Pools(
        lender_token=tokens(rng, LENDER_POOL, "lt"),
        lender_type=types,
        lenders_by_type=[np.flatnonzero(types == k) for k in range(len(LENDER_TYPES))],
        ip_token=tokens(rng, IP_POOL, "ip"),
    )
