"""Trigger Stigg Workflow: the payload from payloadJson, Stigg's response as responseJson,
and a run that may have happened never resent."""

import json
import uuid

import pytest
import requests

from actions import ACTIONS
from app.execution import canonical
from app.store import Claimed, fingerprint
from tests.fakes import Lost, Reply, data, graphql_error, refused

PATH = "trigger-stigg-workflow"


def test_the_payload_is_sent_as_a_json_object(caller, stigg):
    response = caller.post(
        PATH,
        {
            "triggerId": "wf-seat-change",
            "payloadJson": '{"customerId": "acme", "seats": 12, "tags": ["a", null],\n'
            ' "nested": {"ok": true, "price": 9.5}}',
        },
    )

    assert response.status_code == 200, response.json
    assert stigg.operations == ["TriggerWorkflow"]
    assert stigg.calls[0].variables == {
        "input": {
            "triggerId": "wf-seat-change",
            "payload": {
                "customerId": "acme",
                "seats": 12,
                "tags": ["a", None],
                "nested": {"ok": True, "price": 9.5},
            },
        }
    }
    assert response.json == {"success": True, "responseJson": '{"runId": "run-1"}'}


def test_without_a_payload_none_is_sent(caller, stigg):
    for body in ({"triggerId": "wf-1"}, {"triggerId": "wf-1", "payloadJson": ""}):
        response = caller.post(PATH, body)
        assert response.status_code == 200, response.json

    assert [call.variables for call in stigg.calls] == [{"input": {"triggerId": "wf-1"}}] * 2


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        ({"success": True, "response": None}, {"success": True}),
        ({"success": False, "response": {"e": 1}}, {"success": False, "responseJson": '{"e": 1}'}),
        ({"success": True, "response": [1, "b"]}, {"success": True, "responseJson": '[1, "b"]'}),
        ({"success": True, "response": "done"}, {"success": True, "responseJson": '"done"'}),
    ],
)  # fmt: skip
def test_stiggs_answer_is_passed_on(caller, stigg, answer, body):
    stigg.script("TriggerWorkflow", data(answer))

    response = caller.post(PATH, {"triggerId": "wf-1"})

    assert response.status_code == 200
    assert response.json == body


@pytest.mark.parametrize(
    ("payload_json", "message"),
    [
        ("{not json}", "Not valid JSON: Expecting property name enclosed in double quotes"),
        ('["a list"]', 'Must be a JSON object ({"key": "value"}), not list.'),
        ("42", 'Must be a JSON object ({"key": "value"}), not int.'),
        ('"text"', 'Must be a JSON object ({"key": "value"}), not str.'),
        ('{"a": NaN}', "Not valid JSON: NaN is not JSON."),
        ('{"a": Infinity}', "Not valid JSON: Infinity is not JSON."),
        ('{"a": 1} trailing', "Not valid JSON: Extra data"),
        ("{" * 40 + "}" * 40, "Not valid JSON"),
        ('{"a": ' * 40 + "1" + "}" * 40, "Nested more than 32 levels deep."),
        ("[" * 40_000, "Must be at most 32768 characters."),
        ('{"a": "\x01"}', "Must not contain control characters (found U+0001)."),
    ],
)
def test_invalid_payload_json_is_a_400(caller, stigg, payload_json, message):
    response = caller.post(PATH, {"triggerId": "wf-1", "payloadJson": payload_json})

    assert response.status_code == 400
    [error] = response.json["fieldErrors"]
    assert error["field"] == "payloadJson"
    assert error["message"].startswith(message), error["message"]
    assert response.json["code"] == "VALIDATION_FAILED"
    assert stigg.calls == []


def test_the_invalid_payload_error_body(caller, stigg):
    response = caller.post(PATH, {"triggerId": "wf-1", "payloadJson": "[1, 2]"})

    assert response.json == {
        "code": "VALIDATION_FAILED",
        "message": 'payloadJson: Must be a JSON object ({"key": "value"}), not list.',
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
        "fieldErrors": [
            {
                "field": "payloadJson",
                "message": 'Must be a JSON object ({"key": "value"}), not list.',
            }
        ],
    }


def test_an_unknown_trigger_is_a_422_with_stiggs_code(caller, stigg):
    stigg.script(
        "TriggerWorkflow", graphql_error("WorkflowTriggerNotFound", "Workflow trigger not found")
    )

    response = caller.post(PATH, {"triggerId": "wf-nope"})

    assert response.status_code == 422
    assert response.json == {
        "code": "STIGG_REJECTED",
        "message": "Stigg rejected the request (WorkflowTriggerNotFound): "
        "Workflow trigger not found",
        "retryable": False,
        "requestId": response.headers["X-Request-Id"],
        "stiggErrorCode": "WorkflowTriggerNotFound",
    }


@pytest.mark.parametrize(
    ("lost", "status"),
    [
        (Lost(requests.ReadTimeout("read timed out")), 504),
        (Lost(Reply(status=502, raw="<html>Bad gateway</html>")), 503),
        (Lost(requests.ConnectionError("connection reset")), 503),
    ],
    ids=["timeout", "bad-gateway", "dropped"],
)
def test_a_run_whose_answer_was_lost_is_not_resent_and_not_retryable(caller, stigg, lost, status):
    stigg.script("TriggerWorkflow", lost)
    key = {"Idempotency-Key": f"opp-1:triggerStiggWorkflow:lost:{uuid.uuid4().hex}"}

    response = caller.post(PATH, {"triggerId": "wf-1"}, headers=key)

    assert response.status_code == status
    assert response.json["code"] == "WORKFLOW_OUTCOME_UNKNOWN"
    assert response.json["retryable"] is False
    assert response.json["message"].startswith("Stigg may have run the workflow")
    assert len(stigg.workflow_runs) == 1  # it did run
    assert len(stigg.calls_to("TriggerWorkflow")) == 1
    # A final answer under the key: an automatic retry of the same request replays it
    # instead of running the workflow again...
    again = caller.post(PATH, {"triggerId": "wf-1"}, headers=key)
    assert again.status_code == status
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["code"] == "WORKFLOW_OUTCOME_UNKNOWN"
    assert len(stigg.workflow_runs) == 1
    # ... and whoever checked Stigg and wants another run sends a new key.
    new_key = {"Idempotency-Key": key["Idempotency-Key"] + ":again"}
    assert caller.post(PATH, {"triggerId": "wf-1"}, headers=new_key).status_code == 200
    assert len(stigg.workflow_runs) == 2


def test_a_call_stigg_certainly_did_not_get_is_resent(caller, stigg, sleeps):
    stigg.script("TriggerWorkflow", refused(), Reply(status=429, body={"error": "x"}))

    response = caller.post(PATH, {"triggerId": "wf-1"})

    assert response.status_code == 200, response.json
    assert len(stigg.calls_to("TriggerWorkflow")) == 3
    assert len(stigg.workflow_runs) == 1


def test_the_same_idempotency_key_replays_the_run_instead_of_running_it_again(caller, stigg):
    key = {"Idempotency-Key": f"opp-1:triggerStiggWorkflow:{uuid.uuid4().hex}"}
    body = {"triggerId": "wf-1", "payloadJson": '{"a": 1}'}

    first = caller.post(PATH, body, headers=key)
    again = caller.post(PATH, body, headers=key)
    other = caller.post(PATH, {**body, "payloadJson": '{"a": 2}'}, headers=key)

    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 422
    assert other.json["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(stigg.workflow_runs) == 1


def test_the_action_is_one_mutation_of_no_customer():
    action = next(a for a in ACTIONS if a.operation_id == "triggerStiggWorkflow")
    loaded = action.request_schema().load(action.example)

    assert action.stigg_mutations == ("triggerWorkflow",)
    assert action.entity(loaded) is None
    assert json.dumps(loaded["payloadJson"]) == '{"customerId": "001D000000IqhSLIAZ", "seats": 12}'


def test_a_request_whose_earlier_attempt_died_is_not_run_again(app, caller, stigg):
    # A worker claimed the key, may have triggered the workflow, and died before recording
    # its outcome; once its claim lapses, the retry must not run the workflow a second time.
    body = {"triggerId": "wf-1"}
    key = f"opp-1:triggerStiggWorkflow:died:{uuid.uuid4().hex}"
    runtime = app.extensions["runtime"]
    loaded = runtime.executor.load("triggerStiggWorkflow", body)
    dead = app.extensions["store"].idempotency.claim(
        caller_key_id=app.extensions["settings"].caller_keys[0].key_id,
        operation="triggerStiggWorkflow",
        key=key,
        fingerprint=fingerprint(canonical(loaded)),
        request_id="the-dead-attempt",
        lock_s=0,  # lapsed at once
    )
    assert isinstance(dead, Claimed)

    response = caller.post(PATH, body, headers={"Idempotency-Key": key})

    assert response.status_code == 503
    assert response.json["code"] == "WORKFLOW_OUTCOME_UNKNOWN"
    assert response.json["retryable"] is False
    assert response.json["message"].startswith("An earlier attempt with this Idempotency-Key")
    assert stigg.calls_to("TriggerWorkflow") == []
    # Kept under the key: a further automatic retry gets the same answer.
    again = caller.post(PATH, body, headers={"Idempotency-Key": key})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["code"] == "WORKFLOW_OUTCOME_UNKNOWN"
    assert stigg.calls_to("TriggerWorkflow") == []


def test_only_the_workflow_trigger_refuses_to_run_after_a_dead_attempt():
    # The other actions run again: their look-ups find what a dead attempt created, and
    # upserts, updates and cancellations set absolute values.
    assert [a.operation_id for a in ACTIONS if a.interrupted is not None] == [
        "triggerStiggWorkflow"
    ]
