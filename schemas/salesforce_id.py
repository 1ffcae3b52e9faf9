"""Salesforce record IDs: 15-character (case-sensitive) and 18-character (checksummed) forms.

The 18-character form appends three characters that encode which of the first fifteen are
upper case, so it survives case-insensitive systems. Salesforce returns either form
depending on the context; we always hand Stigg the 18-character one so that retries and
second Opportunities land on the same customer.
"""

from __future__ import annotations

import re

_ALPHANUMERIC = re.compile(r"^[A-Za-z0-9]+$")
_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


class InvalidSalesforceId(ValueError):
    pass


def checksum_suffix(id15: str) -> str:
    suffix = ""
    for chunk_start in range(0, 15, 5):
        chunk = id15[chunk_start : chunk_start + 5]
        bits = sum(1 << position for position, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return suffix


def to_18(value: str) -> str:
    """Validate a 15- or 18-character ID and return its 18-character form."""
    if len(value) not in (15, 18) or not _ALPHANUMERIC.match(value):
        raise InvalidSalesforceId("Not a Salesforce ID: expected 15 or 18 letters and digits.")
    expected = checksum_suffix(value[:15])
    if len(value) == 18 and value[15:].upper() != expected:
        raise InvalidSalesforceId(
            "Not a valid 18-character Salesforce ID: its last three characters do not match "
            "the first fifteen (was the ID's upper/lower case changed?)."
        )
    return value[:15] + expected
