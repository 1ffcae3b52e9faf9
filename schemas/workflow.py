"""Trigger Stigg Workflow.

Parameters (Stigg's Salesforce action): Trigger ID and a payload. External Services cannot
declare a free-form object, so the payload travels as `payloadJson`, a string holding a JSON
object, validated here; Stigg's answer comes back the same way, as `responseJson`.
"""

from __future__ import annotations

import json

from marshmallow import ValidationError, fields

from schemas.base import RequestSchema, ResponseSchema
from schemas.fields import Text

# How deep a payload may nest: far beyond any workflow input, well within what the JSON
# encoders and the provisioning log handle.
MAX_PAYLOAD_DEPTH = 32
MAX_PAYLOAD_LENGTH = 32_768


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _depth(value) -> int:
    deepest, pending = 0, [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            pending.extend((child, depth + 1) for child in children)
    return deepest


class JsonObjectText(Text):
    """A string holding one JSON object; loaded as that object."""

    def __init__(self, **kwargs):
        kwargs["metadata"] = {"pattern": r"^\s*\{", **kwargs.get("metadata", {})}
        super().__init__(max_length=MAX_PAYLOAD_LENGTH, multiline=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            loaded = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise ValidationError("Not valid JSON: nested too deeply.") from None
        except ValueError as error:
            raise ValidationError(f"Not valid JSON: {error}.") from None
        if not isinstance(loaded, dict):
            raise ValidationError(
                f'Must be a JSON object ({{"key": "value"}}), not {type(loaded).__name__}.'
            )
        if _depth(loaded) > MAX_PAYLOAD_DEPTH:
            raise ValidationError(f"Nested more than {MAX_PAYLOAD_DEPTH} levels deep.")
        return loaded


class TriggerWorkflowRequest(RequestSchema):
    triggerId = Text(
        required=True,
        metadata={"description": "The Trigger ID of an API-triggered workflow in Stigg."},
    )
    payloadJson = JsonObjectText(
        metadata={
            "description": "The workflow's input: a JSON object written as text, e.g. "
            '{"customerId": "001D000000IqhSLIAZ", "seats": 12} (External Services cannot '
            "declare a free-form object). Empty: no payload."
        }
    )


class TriggerWorkflowResult(ResponseSchema):
    success = fields.Boolean(
        required=True, metadata={"description": "Stigg's success flag for the run."}
    )
    responseJson = fields.String(
        metadata={"description": "Stigg's response for the run, as JSON text (absent if none)."}
    )
