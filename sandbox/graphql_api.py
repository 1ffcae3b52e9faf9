"""Turns a GraphQL-over-HTTP request into a status code and a JSON body, as Stigg does.

Stigg runs Apollo Server, so request-level failures follow Apollo: a malformed body or an
unparseable, invalid or unresolvable document is HTTP 400 with `extensions.code`
(BAD_REQUEST, GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, OPERATION_RESOLUTION_FAILURE)
and variables that do not fit their types are HTTP 400 BAD_USER_INPUT. Once execution
starts the status is 200 and business errors travel in `errors[]` (see errors.py).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
    value_from_ast_untyped,
)

from sandbox.resolvers import FIELD_RESOLVERS, SandboxContext
from sandbox.state import format_datetime

log = logging.getLogger(__name__)

# RFC 3339 date-time with a mandatory offset, as graphql-scalars' DateTime demands.
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# --- scalars ------------------------------------------------------------------------------


def _parse_date_time(value: Any) -> datetime:
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError(f"DateTime must be an ISO-8601 date-time with offset, got {value!r}")
    return datetime.fromisoformat(value)


def _serialize_date_time(value: Any) -> str:
    return format_datetime(value) if isinstance(value, datetime) else str(value)


def _parse_uuid(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"UUID must be a string, got {value!r}")
    return str(uuid.UUID(value))


def _parse_string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _pass_through(value: Any) -> Any:
    return value


_SCALARS = {
    "DateTime": (_parse_date_time, _serialize_date_time),
    "UUID": (_parse_uuid, str),
    "ConnectionCursor": (_parse_string, str),
    "JSON": (_pass_through, _pass_through),
}


def _install_scalar(scalar: GraphQLScalarType, parse_value: Any, serialize: Any) -> None:
    """Attach coercion to a scalar built from SDL (old and new graphql-core attribute names)."""

    def parse_literal(node: Any, variables: Any = None) -> Any:
        return parse_value(value_from_ast_untyped(node, variables))

    scalar.parse_value = parse_value  # type: ignore[method-assign]
    scalar.parse_literal = parse_literal  # type: ignore[method-assign]
    scalar.serialize = serialize  # type: ignore[method-assign]
    if hasattr(scalar, "coerce_input_value"):  # graphql-core >= 3.3
        scalar.coerce_input_value = parse_value
        scalar.coerce_output_value = serialize


# --- schema -------------------------------------------------------------------------------


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def attribute_resolver(source: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
    """Read `fooBar` as `source["fooBar"]` from dicts or `source.foo_bar` from records."""
    if isinstance(source, dict):
        return source.get(info.field_name)
    return getattr(source, _snake_case(info.field_name), None)


@cache
def sandbox_schema() -> GraphQLSchema:
    """The executable schema: schema.graphql plus scalars and resolvers (built once)."""
    sdl = resources.files("sandbox").joinpath("schema.graphql").read_text(encoding="utf-8")
    schema = build_schema(sdl)
    for name, (parse_value, serialize) in _SCALARS.items():
        _install_scalar(schema.type_map[name], parse_value, serialize)  # type: ignore[arg-type]
    for type_name, resolvers in FIELD_RESOLVERS.items():
        fields = schema.type_map[type_name].fields  # type: ignore[union-attr]
        for field_name, resolver in resolvers.items():
            fields[field_name].resolve = resolver
    return schema


# --- request handling ---------------------------------------------------------------------


@dataclass
class GraphQLResponse:
    status: int
    body: dict[str, Any]
    # Root field names (not aliases) that ran and returned without error, or that failed.
    succeeded: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


@dataclass
class RootField:
    name: str  # e.g. provisionSubscriptionV2
    response_key: str  # the alias if any, e.g. provisionSubscription
    node: FieldNode


@dataclass
class PreparedRequest:
    """A request read as far as possible without executing it.

    `root_fields` is known whenever the document parses and names an operation, even if
    it then fails validation, so fault rules and statistics can filter on it.
    """

    root_fields: list[RootField] = field(default_factory=list)
    is_mutation: bool = False
    rejection: GraphQLResponse | None = None
    document: DocumentNode | None = None
    operation_name: str | None = None
    variables: dict[str, Any] | None = None


def _error_entry(code: str, message: str, error: GraphQLError | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"message": message}
    if error is not None and error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    entry["extensions"] = {"code": code}
    return entry


def _request_error(code: str, message: str, error: GraphQLError | None = None) -> GraphQLResponse:
    return _request_errors(code, [error] if error else [], message)


def _request_errors(
    code: str, errors: list[GraphQLError], message: str | None = None
) -> GraphQLResponse:
    """HTTP 400 with Apollo's error shape (no `data` key: execution never started)."""
    entries = [_error_entry(code, message or e.message, e) for e in errors] or [
        _error_entry(code, message or "")
    ]
    return GraphQLResponse(status=400, body={"errors": entries})


def _root_fields(operation: OperationDefinitionNode) -> list[RootField]:
    return [
        RootField(node.name.value, (node.alias or node.name).value, node)
        for node in operation.selection_set.selections
        if isinstance(node, FieldNode)
    ]


def prepare(payload: Any) -> PreparedRequest:
    if not isinstance(payload, dict):
        return PreparedRequest(
            rejection=_request_error(
                "BAD_REQUEST", "POST body must be a JSON object with a `query` string."
            )
        )
    query = payload.get("query")
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if not isinstance(query, str) or not query.strip():
        return PreparedRequest(
            rejection=_request_error(
                "BAD_REQUEST",
                "GraphQL operations must contain a non-empty `query` or a `persistedQuery` "
                "extension.",
            )
        )
    if variables is not None and not isinstance(variables, dict):
        return PreparedRequest(
            rejection=_request_error(
                "BAD_REQUEST", "`variables` in a POST body should be provided as an object."
            )
        )
    try:
        document, validation_errors = _parse_and_validate(query)
    except GraphQLError as error:
        return PreparedRequest(rejection=_request_errors("GRAPHQL_PARSE_FAILED", [error]))
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        message = (
            f'Unknown operation named "{operation_name}".'
            if operation_name
            else "Must provide operation name if query contains multiple operations."
        )
        return PreparedRequest(rejection=_request_error("OPERATION_RESOLUTION_FAILURE", message))
    prepared = PreparedRequest(
        root_fields=_root_fields(operation),
        is_mutation=operation.operation.value == "mutation",
        document=document,
        operation_name=operation_name,
        variables=variables,
    )
    if validation_errors:
        prepared.rejection = _request_errors("GRAPHQL_VALIDATION_FAILED", list(validation_errors))
    return prepared


@lru_cache(maxsize=256)
def _parse_and_validate(query: str) -> tuple[DocumentNode, tuple[GraphQLError, ...]]:
    """Parse and validate a document text once: a client sends the same few documents over
    and over, and validating them was most of the sandbox's CPU under load (bench/). The
    answer depends only on the text and the fixed schema. Raises on a syntax error."""
    document = parse(query)
    return document, tuple(validate(sandbox_schema(), document))


# Where each mutation's input names the entity Stigg's per-entity limit counts it against:
# its customer, or (for a mutation of one subscription) the subscription.
_ENTITY_FIELDS = {
    "updateOneSubscription": ("subscriptionId", "refId"),
    "cancelSubscription": ("subscriptionRefId",),
}
_CUSTOMER_FIELDS = ("customerId", "refId")


def mutation_entities(prepared: PreparedRequest) -> list[str]:
    """The entity each mutation of the request names: its input's customerId (or refId),
    or for updateOneSubscription / cancelSubscription the subscription's ID.

    What Stigg's per-entity rate limit is keyed by. A mutation naming neither (a
    provisionCustomer that lets Stigg generate the ID, triggerWorkflow) counts against none.
    """
    if not prepared.is_mutation:
        return []
    entities = []
    for root in prepared.root_fields:
        for argument in root.node.arguments or ():
            if argument.name.value != "input":
                continue
            try:
                value = value_from_ast_untyped(argument.value, prepared.variables)
            except (TypeError, ValueError, KeyError):
                continue  # malformed: execution will refuse it
            if not isinstance(value, dict):
                continue
            for name in _ENTITY_FIELDS.get(root.name, _CUSTOMER_FIELDS):
                if isinstance(value.get(name), str):
                    entities.append(value[name])
                    break
    return entities


def _format_error(error: GraphQLError) -> dict[str, Any]:
    formatted = error.formatted
    if not error.extensions:
        # Not a StiggError: a sandbox bug. Answer like Stigg's generic failure, log details.
        log.error("unexpected error in resolver", exc_info=error.original_error or error)
        formatted["message"] = "Unexpected error"
        formatted["extensions"] = {"code": "UnexpectedError", "isValidationError": False}
    return formatted


def execute(prepared: PreparedRequest, context: SandboxContext) -> GraphQLResponse:
    """Run a prepared, valid request against the state (holding the state lock)."""
    assert prepared.document is not None and prepared.rejection is None
    with context.state.lock:
        context.state.settle_payments()
        result = execute_sync(
            sandbox_schema(),
            prepared.document,
            context_value=context,
            variable_values=prepared.variables,
            operation_name=prepared.operation_name,
            field_resolver=attribute_resolver,
        )
    errors = result.errors or []
    if errors and all(not e.path for e in errors):
        # Errors without a path come from coercing variables, before any resolver ran.
        return _request_errors("BAD_USER_INPUT", list(errors))
    failed_keys = {e.path[0] for e in errors if e.path}
    response = GraphQLResponse(status=200, body={"data": result.data})
    if errors:
        response.body["errors"] = [_format_error(e) for e in errors]
    for root in prepared.root_fields:
        bucket = response.failed if root.response_key in failed_keys else response.succeeded
        bucket.append(root.name)
    return response
