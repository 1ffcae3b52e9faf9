"""Field types shared by the request and response schemas."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time

from marshmallow import ValidationError, fields

from schemas.currencies import STIGG_CURRENCIES
from schemas.salesforce_id import InvalidSalesforceId, to_18

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# RFC 3339 section 5.6 `date-time`, nothing looser: Python's fromisoformat also takes
# `20260101T100000Z`, week dates and a space instead of `T`, which the docs do not promise.
_RFC3339_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})$"
)
# C0 controls and DEL: a NUL or an ESC in a customer name is a mapping bug upstream, and
# PostgreSQL cannot store a NUL in text at all.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_CHARACTERS_BUT_LINE_BREAKS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Stigg's Int is a signed 32-bit GraphQL Int.
GRAPHQL_INT_MAX = 2**31 - 1


def refuse_control_characters(text: str, *, multiline: bool = False) -> None:
    pattern = _CONTROL_CHARACTERS_BUT_LINE_BREAKS if multiline else _CONTROL_CHARACTERS
    found = pattern.search(text)
    if found:
        raise ValidationError(
            f"Must not contain control characters (found U+{ord(found.group()):04X})."
        )


class Text(fields.String):
    """A string with surrounding white space removed; blank is refused, not passed on."""

    def __init__(self, *, max_length: int = 255, multiline: bool = False, **kwargs):
        self.max_length = max_length
        self.multiline = multiline
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
        refuse_control_characters(text, multiline=self.multiline)
        return text


# Stigg's rule for the IDs a customer of Stigg chooses (REST docs, customers): a letter or
# digit, then letters, digits and `_|.@-`, at most 255 characters.
STIGG_ID_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_|.@-]*$"
_STIGG_ID = re.compile(STIGG_ID_PATTERN)


class StiggId(Text):
    """An ID we choose for Stigg (customer, resource), checked here against Stigg's rule, so
    a bad one is our 400 naming the field, not Stigg's error after a round trip."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"]["pattern"] = STIGG_ID_PATTERN
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not _STIGG_ID.match(text):
            raise ValidationError(
                "Not a Stigg ID: use letters, digits and _ | . @ - only, starting with a "
                "letter or digit."
            )
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
        # A JSON number only: "100" is a mapping mistake upstream, not an amount.
        if isinstance(value, bool) or not isinstance(value, int | float):
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
    """JSON true or false only: "yes", 1 or "true" from a mis-mapped Flow variable is refused.

    (marshmallow's truthy/falsy sets cannot express this: 1 == True in a Python set.)
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError("Not a valid boolean: send true or false.")
        return value


class StrictInteger(fields.Integer):
    """A JSON integer (or a whole float: Flow Number variables arrive as 2.0) that fits
    Stigg's 32-bit GraphQL Int, so an out-of-range value is our 400, not Stigg's."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"].setdefault("maximum", GRAPHQL_INT_MAX)
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        number = super()._deserialize(value, attr, data, **kwargs)
        if abs(number) > GRAPHQL_INT_MAX:
            raise ValidationError(f"Must be at most {GRAPHQL_INT_MAX}.")
        return number


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
            raise ValidationError(_DATE_FORMATS)
        text = value.strip()
        if _DATE.match(text):
            try:
                return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)
            except ValueError:
                raise ValidationError(f"Not a calendar date (YYYY-MM-DD): {text!r}.") from None
        if not _RFC3339_DATE_TIME.match(text):
            if re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$", text):
                raise ValidationError(
                    "A date-time needs seconds and a time zone offset, e.g. 2026-01-31T09:00:00Z."
                )
            raise ValidationError(_DATE_FORMATS)
        try:
            parsed = datetime.fromisoformat(text[:10] + "T" + text[11:].upper())
            return parsed.astimezone(UTC)
        except ValueError:
            raise ValidationError(f"Not a valid date-time: {text!r}.") from None
        except OverflowError:
            # 9999-12-31T23:59:59-23:59 is valid RFC 3339 but not a representable instant.
            raise ValidationError(
                "Out of range: the date-time must fall between years 1 and 9999 in UTC."
            ) from None

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # One format in every answer: whole seconds, UTC, `Z` (Stigg's own values may carry
        # milliseconds; Flow's DateTime has no use for them).
        return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


_DATE_FORMATS = "Must be a date (YYYY-MM-DD) or an RFC 3339 date-time (e.g. 2026-01-31T09:00:00Z)."


def rfc3339(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with `Z`, as Stigg and Flow's DateTime expect; None stays None."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")
