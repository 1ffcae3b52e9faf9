"""Batches: up to BATCH_MAX_ITEMS single actions in one request (`POST /v1/batches`).

An item is exactly the single action sent with the same Idempotency-Key: its `body` is the
action's request body, validated by the action's own schema, and a finished item carries
the action's success body (`result`) or its error body (`error`). These schemas describe
the envelope; the lead's batch module validates each `body` with its action's schema.

HTTP contract (the bulk Apex action in sfdx/ is written against it):

    POST /v1/batches            Authorization: Bearer <key>, Content-Type: application/json,
                                optional Idempotency-Key (the batch's own), optional
                                Prefer: wait=<seconds> (RFC 7240, capped at BATCH_MAX_WAIT_S)
      -> 202 Accepted + Location: /v1/batches/{batchId} + Retry-After, body BatchDocument
         (200 when every item finished within the wait). An item whose envelope or body is
         invalid is FAILED at once with the error a single call would get; the others are
         stored durably with the batch and QUEUED.
      -> a single 4xx Error for the batch as a whole: 400 MALFORMED_JSON / VALIDATION_FAILED
         (no items, more than BATCH_MAX_ITEMS, duplicate idempotencyKey), 401, 413, 415,
         422 IDEMPOTENCY_KEY_REUSED (the batch's key with another body).
    GET /v1/batches/{batchId}   -> 200 BatchDocument (+ Retry-After while it runs); 404
                                NOT_FOUND for a batch of another caller key.
"""

from marshmallow import fields, validate

from schemas.base import RequestSchema, ResponseSchema
from schemas.error import Error

ITEM_STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED")
BATCH_STATUSES = ("QUEUED", "RUNNING", "COMPLETED")

# Printable ASCII without spaces, as the Idempotency-Key header of a single action.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"


class BatchItemRequest(RequestSchema):
    operation = fields.String(
        required=True,
        metadata={"description": "The action's operationId, e.g. createSubscription."},
    )
    idempotencyKey = fields.String(
        required=True,
        validate=validate.Regexp(
            IDEMPOTENCY_KEY_PATTERN,
            error="Must be 1 to 255 printable characters without spaces.",
        ),
        metadata={
            "description": "The item's Idempotency-Key: the same as the header of a single "
            "call, so a key used by a single call replays inside a batch and the other way "
            "round. Unique within the batch."
        },
    )
    reference = fields.String(
        validate=validate.Length(max=255),
        metadata={
            "description": "Opaque caller reference echoed back on the item (for example "
            "the Salesforce record to report the outcome to)."
        },
    )
    body = fields.Dict(
        required=True,
        metadata={"description": "The single action's request body."},
    )


class BatchRequest(RequestSchema):
    items = fields.List(
        fields.Nested(BatchItemRequest),
        required=True,
        metadata={"description": "1 to BATCH_MAX_ITEMS (default 200) items."},
    )


class BatchCounts(ResponseSchema):
    total = fields.Integer(required=True)
    queued = fields.Integer(required=True)
    running = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)


class BatchItem(ResponseSchema):
    index = fields.Integer(required=True, metadata={"description": "Position in the request."})
    operation = fields.String(required=True)
    idempotencyKey = fields.String(required=True)
    reference = fields.String()
    status = fields.String(required=True, metadata={"enum": list(ITEM_STATUSES)})
    httpStatus = fields.Integer(
        metadata={"description": "The status a single call would have answered (finished items)."}
    )
    result = fields.Dict(metadata={"description": "SUCCEEDED: the single action's success body."})
    error = fields.Nested(Error, metadata={"description": "FAILED: the single action's error."})


class BatchDocument(ResponseSchema):
    batchId = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(BATCH_STATUSES)})
    createdAt = fields.String(required=True, metadata={"format": "date-time"})
    finishedAt = fields.String(metadata={"format": "date-time"})
    counts = fields.Nested(BatchCounts, required=True)
    retryAfterSeconds = fields.Integer(
        metadata={
            "description": "While the batch runs: when to look again, estimated from the "
            "queue and Stigg's rate budget."
        }
    )
    items = fields.List(fields.Nested(BatchItem), required=True)
