"""The OpenAPI 3.0.3 document, generated from ACTIONS and the marshmallow schemas.

Salesforce External Services registers this document; its rules shape the output: 3.0.x
only, named component schemas (they become Flow's Apex-defined type names), a `type` on
every property, no `nullable`, `not` or `additionalProperties`, success as `200` and
failures as `4XX`/`5XX` with one shared Error schema, and no `servers` (paths are appended
to the Named Credential's URL).
"""

from __future__ import annotations

import copy

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from actions.action import Action
from schemas.batch import BatchDocument, BatchRequest
from schemas.error import Error

OPENAPI_VERSION = "3.0.3"
API_TITLE = "Stigg Flow Actions"
API_VERSION = "1.0.0"

IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the same key and body replay the first answer; in Flow build it "
        "from the record ID and the action, e.g. {!$Record.Id}-createSubscription."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}


def build_spec(actions: list[Action], *, batches: bool = True) -> dict:
    """The document served at /v1/openapi.json; `batches=False` gives the one registered as
    the External Service (see _batch_paths for why batches are left out there)."""
    spec = APISpec(
        title=API_TITLE,
        version=API_VERSION,
        openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin(schema_name_resolver=_schema_name)],
        info={
            "description": (
                "Provision Stigg customers, subscriptions and credit grants from Salesforce "
                "Flow and Apex. Every failure has the Error body."
            )
        },
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=Error)
    for action in actions:
        spec.path(path=action.path, operations={"post": _operation(action)})
    if batches:
        _batch_paths(spec)
    document = spec.to_dict()
    document["security"] = [{"bearerAuth": []}]
    return _strip_unsupported(document)


def _operation(action: Action) -> dict:
    error = {"content": {"application/json": {"schema": "Error"}}}
    return {
        "operationId": action.operation_id,
        "summary": action.summary,
        "description": action.description,
        "parameters": [IDEMPOTENCY_KEY_PARAMETER],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": action.request_schema}},
        },
        "responses": {
            "200": {
                "description": "Done.",
                "content": {"application/json": {"schema": action.response_schema}},
            },
            "4XX": {"description": "The request was refused; see code and message.", **error},
            "5XX": {"description": "Stigg or the service failed; see retryable.", **error},
        },
    }


PREFER_PARAMETER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": (
        "RFC 7240 `wait=N`: hold the answer until every item finished or N seconds passed "
        "(capped at BATCH_MAX_WAIT_S, 100 by default, below Salesforce's 120 s callout "
        "limit). 200 when the batch completed, else 202."
    ),
    "schema": {"type": "string", "example": "wait=60"},
}


def _batch_paths(spec: APISpec) -> None:
    """The batch endpoints. Not part of the External Service registration: an item's `body`
    and `result` are each some action's body, i.e. objects whose properties depend on
    `operation`, which External Services cannot map (it needs every property named). The
    bulk Apex action calls them with HttpRequest instead."""
    spec.components.schema("BatchRequest", schema=BatchRequest)
    spec.components.schema("BatchDocument", schema=BatchDocument)
    error = {"content": {"application/json": {"schema": "Error"}}}
    batch = {"content": {"application/json": {"schema": "BatchDocument"}}}
    spec.path(
        path="/v1/batches",
        operations={
            "post": {
                "operationId": "createBatch",
                "summary": "Submit a batch of actions",
                "description": (
                    "Up to BATCH_MAX_ITEMS (200) single actions in one callout. Each item is "
                    "its single action sent with the item's idempotencyKey: the same "
                    "validation, errors, idempotency and provisioning log. Items of one "
                    "Stigg customer run in order; everything runs within Stigg's rate limits."
                ),
                "parameters": [IDEMPOTENCY_KEY_PARAMETER, PREFER_PARAMETER],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "BatchRequest"}},
                },
                "responses": {
                    "200": {"description": "Every item finished within the wait.", **batch},
                    "202": {"description": "Accepted; poll the Location.", **batch},
                    "4XX": {"description": "The batch as a whole was refused.", **error},
                    "5XX": {"description": "The service failed; see retryable.", **error},
                },
            }
        },
    )
    spec.path(
        path="/v1/batches/{batchId}",
        operations={
            "get": {
                "operationId": "getBatch",
                "summary": "Where a batch stands",
                "parameters": [
                    {
                        "name": "batchId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The batch and its items.", **batch},
                    "4XX": {"description": "No such batch for this API key.", **error},
                    "5XX": {"description": "The service failed; see retryable.", **error},
                },
            }
        },
    )


def _schema_name(schema) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def _strip_unsupported(node):
    """Drop keywords External Services rejects or cannot map (reference §1.2)."""
    node = copy.deepcopy(node)

    def walk(value):
        if isinstance(value, dict):
            for keyword in ("additionalProperties", "nullable", "x-nullable"):
                value.pop(keyword, None)
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(node)
    return node
