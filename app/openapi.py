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


def build_spec(actions: list[Action]) -> dict:
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
