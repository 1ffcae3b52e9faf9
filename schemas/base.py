"""Base schemas: what every request and response schema has in common."""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, post_dump, pre_load


class RequestSchema(Schema):
    """Unknown fields are refused (a typo must not be silently dropped).

    Optional fields sent as null or blank count as not sent: Apex's JSON.serialize writes
    nulls and Flow sends empty text for unset variables. A required field sent blank still
    fails, with the field named.
    """

    class Meta:
        unknown = RAISE

    # field name -> why it is not accepted here, for fields someone is likely to try.
    refused_field_hints: dict[str, str] = {}

    @pre_load
    def drop_unset_optionals(self, data, **kwargs):
        if not isinstance(data, dict):
            raise ValidationError("The body must be a JSON object.", field_name="_body")
        kept = {}
        for name, value in data.items():
            field = self.fields.get(name)
            unset = value is None or (isinstance(value, str) and not value.strip())
            if unset and field is not None and not field.required:
                continue
            kept[name] = value
        return kept


class ResponseSchema(Schema):
    """Nulls are left out of responses, never sent as null (Flow's handling is unverified)."""

    @post_dump
    def drop_nulls(self, data, **kwargs):
        return {name: value for name, value in data.items() if value is not None}


def flatten_messages(messages, hints: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """marshmallow's nested error dict as (dotted.path[index], message) pairs, in order."""
    flat: list[tuple[str, str]] = []

    def walk(node, path: str) -> None:
        if isinstance(node, dict):
            for key, child in node.items():
                if key in ("_schema", "_body"):
                    walk(child, path)
                elif isinstance(key, int):
                    walk(child, f"{path}[{key}]")
                else:
                    walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for child in node:
                walk(child, path)
        else:
            message = str(node)
            if hints and message == "Unknown field." and path in hints:
                message = hints[path]
            flat.append((path or "body", message))

    walk(messages, "")
    return flat
