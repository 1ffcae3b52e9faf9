"""The one error body every failure has (DESIGN.md, "HTTP contract")."""

from marshmallow import fields

from schemas.base import ResponseSchema


class FieldError(ResponseSchema):
    field = fields.String(
        required=True, metadata={"description": "Path of the field, e.g. addons[0].addonId."}
    )
    message = fields.String(required=True)


class Error(ResponseSchema):
    code = fields.String(
        required=True,
        metadata={"description": "Stable machine-readable code, e.g. VALIDATION_FAILED."},
    )
    message = fields.String(
        required=True, metadata={"description": "Short, self-contained reason."}
    )
    retryable = fields.Boolean(
        required=True, metadata={"description": "Whether sending the same request again can help."}
    )
    requestId = fields.String(metadata={"description": "Quote it when asking for help."})
    fieldErrors = fields.List(fields.Nested(FieldError))
    stiggErrorCode = fields.String(
        metadata={"description": "Stigg's own error code, e.g. PlanNotFound."}
    )
