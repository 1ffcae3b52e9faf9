"""Field types shared by the request and response schemas."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time

from marshmallow import ValidationError, fields

from schemas.currencies import STIGG_CURRENCIES
from schemas.salesforce_id import InvalidSalesforceId, to_18

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class Text(fields.String):
    """A string with surrounding white space removed; blank is refused, not passed on."""

    def __init__(self, *, max_length: int = 255, **kwargs):
        self.max_length = max_length
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("minLength", 1)
        kwargs["metadata"].setdefault("maxLength", max_length)
        kwargs["metadata"].setdefault("pattern", r"\S")
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise ValidationError("Must not be blank.")
        if len(text) > self.max_length:
            raise ValidationError(f"Must be at most {self.max_length} characters.")
        return text


class SalesforceId(fields.String):
    """A Salesforce record ID, normalised to its 18-character form."""

    def __init__(self, *, key_prefix: str, record_kind: str, **kwargs):
        self.key_prefix = key_prefix
        self.record_kind = record_kind
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("minLength", 15)
        kwargs["metadata"].setdefault("maxLength", 18)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            normalised = to_18(raw)
        except InvalidSalesforceId as exc:
            raise ValidationError(str(exc)) from None
        if not normalised.startswith(self.key_prefix):
            raise ValidationError(
                f"Not an {self.record_kind} ID: {self.record_kind} IDs start with "
                f"{self.key_prefix!r}, this one starts with {normalised[:3]!r}."
            )
        return normalised


class Choice(fields.String):
    """One of a fixed set of values, matched case-insensitively, mapped to Stigg's value.

    `mapping` goes from the documented Salesforce-side value to the Stigg enum value.
    """

    def __init__(self, mapping: dict[str, str], **kwargs):
        self.mapping = mapping
        self._by_key = {key.upper(): stigg for key, stigg in mapping.items()}
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("enum", list(mapping))
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raw = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            return self._by_key[raw.upper()]
        except KeyError:
            allowed = ", ".join(self.mapping)
            raise ValidationError(f"Must be one of: {allowed} (got {raw!r}).") from None


class Currency(fields.String):
    """An ISO 4217 code that Stigg accepts, in any case; sent upper-case."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("minLength", 3)
        kwargs["metadata"].setdefault("maxLength", 3)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        code = super()._deserialize(value, attr, data, **kwargs).strip().upper()
        if code not in STIGG_CURRENCIES:
            raise ValidationError(
                f"Not a currency Stigg accepts: {code!r} (use ISO 4217, e.g. USD)."
            )
        return code


class Amount(fields.Float):
    """A finite number in whole currency or credit units, with a lower bound."""

    def __init__(self, *, minimum: float = 0, exclusive: bool = True, **kwargs):
        self.minimum = minimum
        self.exclusive = exclusive
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("minimum", minimum)
        if exclusive:
            kwargs["metadata"].setdefault("exclusiveMinimum", True)
        super().__init__(allow_nan=False, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid number.")
        number = super()._deserialize(value, attr, data, **kwargs)
        if not math.isfinite(number):
            raise ValidationError("Not a valid number.")
        too_small = number <= self.minimum if self.exclusive else number < self.minimum
        if too_small:
            relation = "greater than" if self.exclusive else "at least"
            raise ValidationError(f"Must be {relation} {self.minimum:g}.")
        return number


class StrictBoolean(fields.Boolean):
    """true or false only: "yes", 1 or "on" from a mis-mapped Flow variable is refused."""

    truthy = {True, "true", "True", "TRUE"}
    falsy = {False, "false", "False", "FALSE"}


class StrictInteger(fields.Integer):
    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        # Flow Number variables arrive as 2.0; accept whole floats, refuse 2.5 and true.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)


class UtcDateTime(fields.Field):
    """A date (`YYYY-MM-DD`, meaning the start of that day in UTC) or an RFC 3339 date-time
    with an offset. Loaded as an aware UTC datetime; dumped as RFC 3339 with `Z`.
    """

    def __init__(self, *, openapi_format: str = "date", **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("type", "string")
        kwargs["metadata"].setdefault("format", openapi_format)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("Must be a date (YYYY-MM-DD) or an RFC 3339 date-time.")
        text = value.strip()
        try:
            if _DATE.match(text):
                return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
            parsed = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise ValidationError("Must be a date (YYYY-MM-DD) or an RFC 3339 date-time.") from None
        if parsed.tzinfo is None:
            raise ValidationError(
                "A date-time needs a time zone offset, e.g. 2026-01-31T09:00:00Z."
            )
        return parsed.astimezone(UTC)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return rfc3339(value)


def rfc3339(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with `Z`, as Stigg and Flow's DateTime expect; None stays None."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")
