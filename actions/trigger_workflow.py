"""Trigger Stigg Workflow: `triggerWorkflow(input: {triggerId, payload})`.

Stigg runs the workflow again on every call and offers no way to look a run up, so the
call is never resent once it may have reached Stigg (Resend.ONLY_IF_NOT_EXECUTED). When its
answer is lost (timeout, dropped connection, 5xx), the run may have happened: the request
fails with WORKFLOW_OUTCOME_UNKNOWN, `retryable: false` (app/errors.py), instead of an
invitation to retry blindly. An Idempotency-Key still replays a finished request's answer.
"""

from __future__ import annotations

import json

from actions.once import CreationTag
from app.errors import workflow_outcome_unknown
from app.stigg import StiggFailure, StiggSession


def run(*, request: dict, stigg: StiggSession, tag: CreationTag | None = None) -> dict:
    workflow_input = {"triggerId": request["triggerId"]}
    if "payloadJson" in request:
        workflow_input["payload"] = request["payloadJson"]
    attempts_before = stigg.attempts
    try:
        outcome = stigg.execute("TriggerWorkflow", {"input": workflow_input})
    except StiggFailure as failure:
        sent = stigg.attempts > attempts_before
        if sent and failure.retryable and failure.may_have_executed:
            raise workflow_outcome_unknown(failure) from failure
        raise
    response = outcome.get("response")
    return {
        "success": outcome["success"],
        "responseJson": None if response is None else json.dumps(response),
    }
