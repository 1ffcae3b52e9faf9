"""The error codes Stigg can answer with, kept as data in error_codes.json.

`STIGG_ERROR_CODES` is the value set of the `ErrorCode` enum in Stigg's published schema
(stigg-api-client 6.25.0); tests/contract/test_stigg_schema.py fails when the two differ.
`APOLLO_ERROR_CODES` are the codes Apollo Server itself puts in `extensions.code` around
Stigg's resolvers. A fault rule may inject only these (faults.py), and every StiggError the
sandbox raises uses one of the first set (errors.py), so no test can come to rely on a code
Stigg never sends.
"""

from __future__ import annotations

import json
from importlib import resources

_DATA = json.loads(
    resources.files("sandbox").joinpath("error_codes.json").read_text(encoding="utf-8")
)

STIGG_ERROR_CODES: frozenset[str] = frozenset(_DATA["stiggErrorCodes"])
APOLLO_ERROR_CODES: frozenset[str] = frozenset(_DATA["apolloErrorCodes"])
INJECTABLE_ERROR_CODES = STIGG_ERROR_CODES | APOLLO_ERROR_CODES
