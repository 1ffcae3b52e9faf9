"""Spec-driven fuzzing: schemathesis against the app in-process, with its served spec.

Valid and invalid bodies and headers for every operation, with a valid key, then with no key
and a wrong one. Stigg is the scripted FakeStigg (an empty environment where every create
succeeds), so valid requests reach a real 200. Every answer must be a declared status (no 5xx
here: Stigg never fails), JSON, and match its schema: Error for 4XX/5XX (and 401 without a
good key), the result schema for 200 (so no nulls and RFC 3339 date-times).

The schema allows values the service refuses on purpose (a 15-character string that is not a
Salesforce ID gets 400 VALIDATION_FAILED); 400 is declared under 4XX, so that conforms, and
no positive-data-acceptance check runs. Bounded and derandomized so `make test` stays fast
and a failure reproduces.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import responses
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from tests.conftest import ACCOUNT_15, BASE_CONFIG, CALLER_KEY, OPPORTUNITY_15
from tests.fakes import FakeStigg

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _app():
    # A database of its own, new every run: never the instance/ file `make run` uses, and
    # no answer stored by an earlier run (of older code) to be replayed.
    database = Path(tempfile.mkdtemp(prefix="fuzz-")) / "fuzz.db"
    app = create_app({**BASE_CONFIG, "DATABASE_URL": f"sqlite:///{database}"})
    # A Stigg retry would sleep for real; the fake never fails, but keep it instant anyway.
    app.extensions["stigg"]._sleep = lambda seconds: None
    return app


APP = _app()
schema = schemathesis.openapi.from_wsgi("/v1/openapi.json", APP)


# Valid per the spec but refused by the service on purpose, with a 400 the spec declares: the
# spec cannot say "no other properties" (External Services rejects additionalProperties), nor
# an ID's key prefix and checksum, nor which currencies Stigg knows. Positive cases get these
# values replaced so that most of them reach a real 200; negative cases are sent as generated.
ACCEPTABLE_VALUES = {
    "salesforceAccountId": ACCOUNT_15,
    "salesforceOpportunityId": OPPORTUNITY_15,
    "currency": "USD",
}


def _make_acceptable(case) -> None:
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    if not isinstance(case.body, dict):
        return
    request_schema = case.operation.definition.raw["requestBody"]["content"]["application/json"]
    body = _declared_only(case.body, request_schema["schema"])
    for name, value in ACCEPTABLE_VALUES.items():
        if name in body:
            body[name] = value
    case.body = body


def _declared_only(value, schema_node):
    """value without the properties its schema does not declare, at every level."""
    components = schema.raw_schema["components"]["schemas"]
    while "$ref" in schema_node:
        schema_node = components[schema_node["$ref"].rsplit("/", 1)[1]]
    if isinstance(value, dict) and "properties" in schema_node:
        declared = schema_node["properties"]
        return {k: _declared_only(v, declared[k]) for k, v in value.items() if k in declared}
    if isinstance(value, list) and "items" in schema_node:
        return [_declared_only(item, schema_node["items"]) for item in value]
    return value


def _call_with_fake_stigg(case, **kwargs):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        FakeStigg(mock)
        return case.call(**kwargs)


def _is_method_probe(case) -> bool:
    """The coverage phase also sends the operation's path with other HTTP methods."""
    return case.method.upper() != case.operation.method.upper()


def _assert_method_not_allowed(case, response) -> None:
    # OPTIONS included: every answer on an action path is the JSON error, with Allow.
    assert response.status_code == 405, response.text
    body = response.json()
    assert body["code"] == "METHOD_NOT_ALLOWED" and body["retryable"] is False
    allow = {name.lower(): values for name, values in response.headers.items()}["allow"]
    assert case.operation.method.upper() in allow[0].split(", ")


@schema.parametrize()
@FUZZ_SETTINGS
def test_any_request_with_a_valid_key_gets_a_conforming_answer(case):
    headers = {"Authorization": f"Bearer {CALLER_KEY}"}
    _make_acceptable(case)
    response = _call_with_fake_stigg(case, headers=headers)

    case.validate_response(response, checks=CHECKS, headers=headers)
    if _is_method_probe(case):
        _assert_method_not_allowed(case, response)


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer not-a-caller-key", f"Basic {CALLER_KEY}", "Bearer", ""],
    ids=["missing", "wrong-key", "wrong-scheme", "no-key", "empty"],
)
@schema.parametrize()
# Generated cases only: the coverage phase's hundreds of boundary bodies add nothing here.
@settings(FUZZ_SETTINGS, max_examples=10, phases=[Phase.generate])
def test_no_or_wrong_key_gets_401_with_the_error_body(case, authorization):
    case.headers = {
        name: value
        for name, value in (case.headers or {}).items()
        if name.lower() != "authorization"
    }
    if authorization is not None:
        case.headers["Authorization"] = authorization
    response = _call_with_fake_stigg(case)

    case.validate_response(response, checks=CHECKS, headers=case.headers)
    if _is_method_probe(case):
        _assert_method_not_allowed(case, response)
        return
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "UNAUTHORIZED"
