"""Storage for idempotency keys and the provisioning log (SQLAlchemy 2 + Alembic).

No Flask in here: the request pipeline builds one ``Store`` per process and calls it.
"""

from app.store.db import Store, create_engine_for, migrate
from app.store.errors import StoreError
from app.store.idempotency import (
    DEFAULT_TTL_S,
    Claim,
    Claimed,
    InProgress,
    Mismatch,
    Replay,
    fingerprint,
)
from app.store.provisioning_log import redact

__all__ = [
    "DEFAULT_TTL_S",
    "Claim",
    "Claimed",
    "InProgress",
    "Mismatch",
    "Replay",
    "Store",
    "StoreError",
    "create_engine_for",
    "fingerprint",
    "migrate",
    "redact",
]
