"""Pseudonymous ids: an HMAC of a source id, so no real id is ever stored."""

from __future__ import annotations

import hashlib
import hmac
import os

# Development default only; production sets CREDITLINE_ID_KEY from a secret store.
DEV_ID_KEY = "creditline-dev-key-not-secret"
ID_KEY_ENV = "CREDITLINE_ID_KEY"


def id_key() -> bytes:
    """Return the HMAC key from the environment, or the documented development default."""
    return os.environ.get(ID_KEY_ENV, DEV_ID_KEY).encode()


def pseudonymise(source_id: str, prefix: str = "u", key: bytes | None = None) -> str:
    """Map a source id to a stable pseudonymous id.

    >>> pseudonymise("src-000123", key=b"k")
    'u_a9ff630cb2cffb52'
    >>> pseudonymise("src-000123", key=b"k") == pseudonymise("src-000123", key=b"other")
    False
    """
    digest = hmac.new(key if key is not None else id_key(), source_id.encode(), hashlib.sha256)
    return f"{prefix}_{digest.hexdigest()[:16]}"
