"""The bulk Apex action's HTTP calls against the batch API and the actions' schemas.

No Apex runs here (Apex tests run in an org at deploy time). What can drift offline is the
contract: paths, headers, the envelope's field names, the operations' body fields and the fields
read back. Every name below is read from schemas/batch.py, the actions' request and response
schemas and `actions.ACTIONS`, never from a copy; the Apex side is read from sfdx/.
"""

from __future__ import annotations

import re

import pytest
from marshmallow import fields as mm_fields

from actions import ACTIONS
from schemas import batch
from schemas.error import Error
from tests.contract import sfdx

ACTION = sfdx.Apex("StiggBulkProvisioning")
CLIENT = sfdx.Apex("StiggBatchClient")
POLLER = sfdx.Apex("StiggBatchPoller")
EVENTS = sfdx.Apex("StiggProvisioningEvents")
ACTIONS_BY_ID = {action.operation_id: action for action in ACTIONS}
# Response fields the Apex reads before the service sends them (none now: issue 13 added the
# subscription deep link, stiggSubscriptionUrl, to every subscription response).
PENDING_RESULT_FIELDS: set[str] = set()
# The composite body fields the Apex builds from parallel lists, and the nested schema they follow.
COMPOSITE_BUILDERS = {
    "addons": "addons(Request request)",
    "subscriptionCreditEntitlements": "creditEntitlements(Request request)",
}


def _names(schema_class) -> set[str]:
    return {field.data_key or name for name, field in schema_class().fields.items()}


def _required(schema_class) -> set[str]:
    return {
        field.data_key or name for name, field in schema_class().fields.items() if field.required
    }


def _documented_path(method: str) -> str:
    """The path of `method` in schemas/batch.py's HTTP contract (its module docstring)."""
    match = re.search(rf"^\s*{method}\s+(/v1/\S+)", batch.__doc__, re.MULTILINE)
    assert match, f"schemas/batch.py documents no {method} path"
    return match.group(1)


def _served_batch_paths() -> dict[str, set[str]]:
    """Batch paths of the service's OpenAPI document, once the batch endpoints are in it."""
    from app.openapi import build_spec

    paths = build_spec(ACTIONS).get("paths", {})
    return {path: set(item) for path, item in paths.items() if path.startswith("/v1/batches")}


# --- paths and headers -------------------------------------------------------------------


def test_post_and_get_paths_are_the_batch_api_paths():
    endpoint = CLIENT.constant("BATCHES_ENDPOINT")
    assert endpoint.startswith("callout:StiggActions/"), "calls go through the Named Credential"
    post_path = endpoint.removeprefix("callout:StiggActions")
    assert post_path == _documented_path("POST")
    # fetch(): BATCHES_ENDPOINT + '/' + the URL-encoded batch ID
    fetch = CLIENT.block("public static Reply fetch(")
    assert "BATCHES_ENDPOINT + '/' + EncodingUtil.urlEncode(batchId, 'UTF-8')" in fetch
    assert _documented_path("GET") == post_path + "/{batchId}"
    assert "newRequest('GET', endpoint" in fetch
    assert "newRequest('POST', BATCHES_ENDPOINT" in CLIENT.block("public static Reply submit(")
    served = _served_batch_paths()
    if served:  # the lead's batch endpoints are in app/openapi.py's document
        assert "post" in served.get(post_path, set())
        assert "get" in served.get(post_path + "/{batchId}", set())


def test_headers_of_the_batch_post():
    submit = CLIENT.block("public static Reply submit(")
    assert "request.setHeader('Content-Type', 'application/json');" in submit
    assert "request.setHeader('Prefer', 'wait=' + waitSeconds);" in submit
    assert "JSON.serialize(new BatchRequest(items), true)" in submit, "nulls are left out"
    new_request = CLIENT.block("static HttpRequest newRequest(")
    assert "request.setHeader('Accept', 'application/json');" in new_request
    assert "setHeader('Authorization'" not in CLIENT.source, "the External Credential adds the key"


def test_wait_and_timeout_fit_the_service_cap_and_salesforce_limits():
    max_wait = CLIENT.constant("MAX_WAIT_S")
    budget_ms = CLIENT.constant("CALLOUT_BUDGET_MS")
    margin = CLIENT.constant("ANSWER_MARGIN_S")
    assert max_wait <= 100, "the service caps Prefer: wait at BATCH_MAX_WAIT_S (100 s by default)"
    assert budget_ms == 120_000, "Salesforce: 120 s per callout and per transaction"
    assert max_wait + margin <= budget_ms // 1000, "the timeout stays above the wait"
    assert CLIENT.constant("MIN_TIMEOUT_MS") < budget_ms
    assert POLLER.constant("POLL_TIMEOUT_MS") <= budget_ms
    assert 1 <= POLLER.constant("MAX_DELAY_MINUTES") <= 10, "AsyncOptions delay range"


def test_batches_hold_at_most_the_service_maximum():
    assert ACTION.constant("MAX_ITEMS_PER_BATCH") == 200
    assert "items" in _names(batch.BatchRequest)


# --- envelope and answer -----------------------------------------------------------------


def test_envelope_fields_are_the_batch_request_fields():
    assert set(CLIENT.fields("BatchRequest")) == _names(batch.BatchRequest)
    item = set(CLIENT.fields("ItemRequest"))
    assert item == _names(batch.BatchItemRequest)
    assert _required(batch.BatchItemRequest) <= item


def test_fields_read_from_the_answer_are_batch_document_fields():
    assert set(CLIENT.fields("BatchDocument")) <= _names(batch.BatchDocument)
    assert {"batchId", "items", "retryAfterSeconds"} <= set(CLIENT.fields("BatchDocument"))
    assert set(CLIENT.fields("BatchItem")) <= _names(batch.BatchItem)
    assert {"index", "status", "result", "error"} <= set(CLIENT.fields("BatchItem"))
    assert set(CLIENT.fields("ErrorBody")) <= _names(Error)


def test_fields_read_from_a_result_are_the_actions_response_fields():
    responses = set().union(*(_names(action.response_schema) for action in ACTIONS))
    read = set(CLIENT.fields("ActionResult"))
    assert read - PENDING_RESULT_FIELDS <= responses, read - PENDING_RESULT_FIELDS - responses
    assert not PENDING_RESULT_FIELDS & responses, (
        f"{PENDING_RESULT_FIELDS & responses} is served now: drop it from PENDING_RESULT_FIELDS"
    )


def test_statuses_the_apex_knows_are_the_batch_item_statuses():
    used = set(re.findall(r"'(QUEUED|RUNNING|SUCCEEDED|FAILED|COMPLETED)'", CLIENT.source))
    assert used <= set(batch.ITEM_STATUSES) | set(batch.BATCH_STATUSES)
    assert {"QUEUED", "SUCCEEDED", "FAILED"} <= used


def test_key_pattern_is_the_batch_api_pattern():
    apex = re.compile("^" + ACTION.constant("KEY_PATTERN") + "$")
    service = re.compile(batch.IDEMPOTENCY_KEY_PATTERN)
    samples = [
        "006000000000001AAA:createSubscription:2025-01-31T12:00:00Z",
        "".join(chr(c) for c in range(0x21, 0x7F)),
        "x" * 255, "x" * 256, "", "has space", "tab\there", "ünïcode", "a\n",
    ]  # fmt: skip
    for sample in samples:
        assert bool(apex.match(sample)) == bool(service.match(sample)), repr(sample)


# --- operations and bodies ---------------------------------------------------------------


def test_operations_are_actions_of_the_service():
    operations = set(ACTION.table("BODY_FIELDS"))
    assert operations <= set(ACTIONS_BY_ID), operations - set(ACTIONS_BY_ID)
    assert {
        "createCustomerWithEmail",
        "createCustomerWithoutEmail",
        "createSubscription",
        "createCreditGrant",
    } <= operations
    assert set(ACTION.table("REQUIRED_FIELDS")) == operations


@pytest.mark.parametrize("operation", sorted(ACTION.table("BODY_FIELDS")))
def test_body_fields_are_the_operation_request_fields(operation):
    schema = ACTIONS_BY_ID[operation].request_schema
    sent = ACTION.table("BODY_FIELDS")[operation]
    assert len(sent) == len(set(sent)), f"{operation}: a field is listed twice"
    assert set(sent) <= _names(schema), set(sent) - _names(schema)
    assert set(ACTION.table("REQUIRED_FIELDS")[operation]) == _required(schema)
    assert _required(schema) <= set(sent)


@pytest.mark.parametrize("body_field", sorted(COMPOSITE_BUILDERS))
def test_composite_body_fields_follow_their_nested_schema(body_field):
    owners = [
        action.request_schema
        for action in ACTIONS
        if body_field in ACTION.table("BODY_FIELDS").get(action.operation_id, [])
    ]
    assert owners
    for schema in owners:
        nested = schema().fields[body_field]
        assert isinstance(nested, mm_fields.List)
        item_schema = nested.inner.schema
        builder = ACTION.block(COMPOSITE_BUILDERS[body_field])
        built = set(re.findall(r"'(\w+)'\s*=>", builder)) | set(
            re.findall(r"put\('(\w+)'", builder)
        )
        item_fields = {f.data_key or n for n, f in item_schema.fields.items()}
        assert built <= item_fields, built - item_fields
        assert {f for f, field in item_schema.fields.items() if field.required} <= built


def test_every_request_field_reaches_a_body_or_the_envelope():
    request_fields = set(ACTION.fields("Request"))
    renamed = ACTION.string_map("REQUEST_FIELD_FOR")  # body field -> Request field
    composites = ACTION.string_map("COMPOSITE_SOURCES")  # Request field -> body field
    envelope = {"operation", "recordId", "idempotencyKey", "skipReason"}
    body_fields = set().union(*map(set, ACTION.table("BODY_FIELDS").values()))
    reached = envelope | set(composites) | {renamed.get(f, f) for f in body_fields}
    assert request_fields - reached == set(), "Request fields no operation sends"
    assert reached - envelope - set(composites) <= request_fields | set(COMPOSITE_BUILDERS)
    assert set(composites.values()) == set(COMPOSITE_BUILDERS)
    assert "currency" in renamed, "currency is an Apex reserved word"


# --- results and events ------------------------------------------------------------------


def _event_fields() -> set[str]:
    folder = sfdx.DEFAULT_DIR / "objects" / sfdx.EVENT / "fields"
    return {path.name.removesuffix(".field-meta.xml") for path in folder.glob("*.field-meta.xml")}


def test_the_event_carries_what_the_issue_lists():
    assert _event_fields() == {
        "Operation__c", "Salesforce_Record_ID__c", "Idempotency_Key__c", "Status__c",
        "Stigg_Customer_ID__c", "Stigg_Customer_URL__c", "Stigg_Subscription_ID__c",
        "Stigg_Subscription_URL__c", "Error_Code__c", "Error_Message__c", "Retryable__c",
        "Batch_ID__c",
    }  # fmt: skip


def test_every_event_field_is_set_from_the_result():
    to_event = EVENTS.block("static Stigg_Provisioning_Result__e toEvent(")
    assert set(re.findall(r"(\w+__c)\s*=", to_event)) == _event_fields()
    result_fields = set(ACTION.fields("Result"))
    for read in re.findall(r"result\.(\w+)", to_event):
        assert read in result_fields, read


def test_text_event_fields_fit_what_the_apex_cuts_to():
    lengths = {
        "TEXT_LENGTH": EVENTS.constant("TEXT_LENGTH"),
        "ID_LENGTH": EVENTS.constant("ID_LENGTH"),
    }
    to_event = EVENTS.block("static Stigg_Provisioning_Result__e toEvent(")
    folder = sfdx.DEFAULT_DIR / "objects" / sfdx.EVENT / "fields"
    for field, limit in re.findall(r"(\w+__c)\s*=\s*cut\([^,]+,\s*(\w+)\)", to_event):
        root = sfdx.parse(folder / f"{field}.field-meta.xml")
        assert sfdx.text(root, "type") == "Text", field
        assert int(sfdx.text(root, "length")) == lengths[limit], field
