"""A scripted stand-in for Stigg's GraphQL endpoint, on top of `responses`.

By default it behaves like an empty Stigg environment (unknown customers, every create
succeeds); a test scripts the answers it cares about per operation and then asserts the
exact documents, variables and headers that were sent.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field

import requests
import responses
from urllib3.exceptions import NewConnectionError

STIGG_URL = "https://api.stigg.test/graphql"

_RESULT_KEYS = {
    "GetCustomer": "getCustomerByRefId",
    "ProvisionCustomer": "provisionCustomer",
    "UpdateCustomer": "updateCustomer",
    "ProvisionSubscription": "provisionSubscription",
    "GrantCredits": "createCreditGrant",
    "CreditGrants": "creditGrants",
    "CustomerSubscriptions": "customerSubscriptions",
    "UpdateSubscription": "updateSubscription",
    "CancelSubscription": "cancelSubscription",
    "TriggerWorkflow": "triggerWorkflow",
}
# When the fake's subscriptions end if cancelled at the end of the billing period.
PERIOD_END = "2026-12-27T10:00:00.000Z"
NOW = "2026-11-27T10:00:00.000Z"


@dataclass
class Reply:
    status: int = 200
    body: object = None
    headers: dict = field(default_factory=dict)
    raw: str | None = None


def data(result) -> dict:
    """Marker: answer with this value as the operation's result field."""
    return {"__result__": result}


def graphql_error(
    code: str | None, message: str = "rejected", *, validation: bool = True, status=200
):
    extensions = {"isValidationError": validation}
    if code is not None:
        extensions["code"] = code
    return Reply(
        status=status,
        body={"data": None, "errors": [{"message": message, "extensions": extensions}]},
    )


@dataclass
class Lost:
    """Marker: Stigg executes the call (the default way) but the answer is lost: the caller
    gets `answer` (a Reply or an exception) instead."""

    answer: object


def refused() -> Exception:
    return requests.ConnectionError(NewConnectionError(None, "Connection refused"))


@dataclass
class Call:
    operation: str
    variables: dict
    query: str
    headers: dict

    @property
    def input(self) -> dict:
        return self.variables["input"]


class FakeStigg:
    def __init__(self, mock: responses.RequestsMock):
        self.calls: list[Call] = []
        # What the fake Stigg created, so look-ups find it as real Stigg would.
        self.grants: list[dict] = []
        self.subscriptions: list[dict] = []
        # The workflows triggered (their inputs), oldest first.
        self.workflow_runs: list[dict] = []
        self._scripts: dict[str, list] = defaultdict(list)
        self._ids = itertools.count(1)
        mock.add_callback(responses.POST, STIGG_URL, callback=self._answer)

    def script(self, operation: str, *answers) -> None:
        """Queue answers for the next calls of `operation` (then the defaults apply). An
        answer may be a function of the Call, run when the call arrives."""
        self._scripts[operation].extend(answers)

    def add_subscription(
        self,
        customer_id: str,
        subscription_id: str,
        *,
        status: str = "ACTIVE",
        addons: tuple[tuple[str, int], ...] = (),
        resource_id: str | None = None,
    ) -> dict:
        """A subscription Stigg already has (newest first, as Stigg lists them)."""
        subscription = {
            "subscriptionId": subscription_id,
            "customerId": customer_id,
            "status": status,
            "startDate": "2026-01-01T00:00:00.000Z",
            "endDate": NOW if status in ("CANCELED", "EXPIRED") else None,
            "additionalMetaData": None,
            "customer": {"customerId": customer_id},
            "resource": {"resourceId": resource_id} if resource_id else None,
            "addons": [{"addonId": a, "quantity": float(q)} for a, q in addons],
        }
        self.subscriptions.insert(0, subscription)
        return subscription

    def calls_to(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    @property
    def operations(self) -> list[str]:
        return [call.operation for call in self.calls]

    def _answer(self, request):
        payload = json.loads(request.body)
        call = Call(
            payload.get("operationName"),
            payload.get("variables") or {},
            payload["query"],
            dict(request.headers),
        )
        self.calls.append(call)
        queue = self._scripts[call.operation]
        answer = queue.pop(0) if queue else self._default(call)
        if callable(answer) and not isinstance(answer, Exception):
            answer = answer(call)  # decided when the call arrives
        if isinstance(answer, Lost):
            self._default(call)
            answer = answer.answer
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, Reply):
            text = answer.raw if answer.raw is not None else json.dumps(answer.body)
            return answer.status, answer.headers, text
        result = (
            answer["__result__"] if isinstance(answer, dict) and "__result__" in answer else answer
        )
        return 200, {}, json.dumps({"data": {_RESULT_KEYS[call.operation]: result}})

    def _default(self, call: Call):
        given = call.variables.get("input", {})
        if call.operation == "GetCustomer":
            return data(None)
        if call.operation == "ProvisionCustomer":
            return data({"customer": {"customerId": given["customerId"]}})
        if call.operation == "UpdateCustomer":
            return data({"customerId": given["customerId"]})
        if call.operation == "ProvisionSubscription":
            subscription_id = f"subscription-{given['planId']}-{next(self._ids)}"
            self.subscriptions.insert(
                0,
                {
                    "subscriptionId": subscription_id,
                    "customerId": given["customerId"],
                    "status": "ACTIVE",
                    "startDate": given.get("startDate", "2026-11-27T10:00:00.000Z"),
                    "endDate": None,
                    "additionalMetaData": given.get("additionalMetaData"),
                    "customer": {"customerId": given["customerId"]},
                    "resource": {"resourceId": given["resourceId"]}
                    if "resourceId" in given
                    else None,
                    "addons": [
                        {"addonId": a["addonId"], "quantity": float(a.get("quantity", 1))}
                        for a in given.get("addons", [])
                    ],
                },
            )
            return data(
                {
                    "id": subscription_id,
                    "status": "SUCCESS",
                    "checkoutUrl": None,
                    "isScheduled": False,
                    "subscription": {"subscriptionId": subscription_id, "status": "ACTIVE"},
                }
            )
        if call.operation == "GrantCredits":
            grant = grant_from(given, grant_id=f"grant-{next(self._ids)}")
            self.grants.insert(0, grant)
            return data({key: value for key, value in grant.items() if key != "resourceId"})
        if call.operation == "CreditGrants":
            matching = [
                grant
                for grant in self.grants
                if grant["customerId"] == given["customerId"]
                and grant["currencyId"] == given.get("currencyId", grant["currencyId"])
                and grant.get("resourceId") == given.get("resourceId")
            ]
            return data(page(matching, given.get("paging") or {}, strip=("resourceId",)))
        if call.operation == "CustomerSubscriptions":
            found = [s for s in self.subscriptions if _matches(s, call.variables["filter"])]
            return data(page(found, call.variables.get("paging") or {}, strip=("customerId",)))
        if call.operation == "UpdateSubscription":
            subscription = self._subscription(given["subscriptionId"])
            if subscription is None:
                return graphql_error("SubscriptionNotFound", "Subscription not found")
            if "addons" in given:
                subscription["addons"] = [
                    {"addonId": a["addonId"], "quantity": float(a["quantity"])}
                    for a in given["addons"]
                ]
            return data(_node(subscription, "subscriptionId", "status", "customer"))
        if call.operation == "CancelSubscription":
            subscription = self._subscription(given["subscriptionRefId"])
            if subscription is None:
                return graphql_error("SubscriptionNotFound", "Subscription not found")
            if subscription["status"] in ("CANCELED", "EXPIRED"):
                return graphql_error("SubscriptionAlreadyCanceledOrExpired", "Already canceled")
            time = given.get("subscriptionCancellationTime")
            if time == "IMMEDIATE":
                subscription["status"], subscription["endDate"] = "CANCELED", NOW
            else:
                subscription["endDate"] = given.get("endDate", PERIOD_END)
            return data(_node(subscription, "subscriptionId", "status", "endDate", "customer"))
        if call.operation == "TriggerWorkflow":
            self.workflow_runs.append(given)
            run_id = f"run-{next(self._ids)}"
            return data({"success": True, "response": {"runId": run_id}})
        raise AssertionError(f"unexpected operation {call.operation}")

    def _subscription(self, subscription_id: str) -> dict | None:
        return next((s for s in self.subscriptions if s["subscriptionId"] == subscription_id), None)


def _node(record: dict, *fields: str) -> dict:
    return {name: record[name] for name in fields}


def _matches(subscription: dict, subscription_filter: dict) -> bool:
    """The filters the service sends: customer, resource, subscription ID, statuses."""
    customer = (subscription_filter.get("customer") or {}).get("customerId", {}).get("eq")
    subscription_id = subscription_filter.get("subscriptionId", {}).get("eq")
    statuses = subscription_filter["status"]["in"]
    resource = (subscription_filter.get("resource") or {}).get("resourceId", {}).get("eq")
    return (
        (customer is None or subscription["customerId"] == customer)
        and (subscription_id is None or subscription["subscriptionId"] == subscription_id)
        and subscription["status"] in statuses
        and (resource is None or (subscription["resource"] or {}).get("resourceId") == resource)
    )


def page(nodes: list[dict], paging: dict, *, strip=()) -> dict:
    """A relay connection over `nodes` with index cursors, as Stigg's paging answers."""
    start = int(paging["after"]) + 1 if "after" in paging else 0
    size = paging.get("first", 10)
    chosen = nodes[start : start + size]
    edges = [
        {"cursor": str(start + offset), "node": {k: v for k, v in node.items() if k not in strip}}
        for offset, node in enumerate(chosen)
    ]
    return {
        "edges": edges,
        "pageInfo": {
            "hasNextPage": start + size < len(nodes),
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def grant_from(given: dict, *, grant_id: str, status: str = "ACTIVE") -> dict:
    return {
        "grantId": grant_id,
        "customerId": given["customerId"],
        "status": status,
        "amount": given["amount"],
        "currencyId": given["currencyId"],
        "effectiveAt": given.get("effectiveAt", "2026-11-27T10:00:00.000Z"),
        "expireAt": given.get("expireAt"),
        "additionalMetaData": given.get("additionalMetaData"),
        "resourceId": given.get("resourceId"),
    }


class Matches:
    """Equal to any string matching `pattern` (for values a test cannot know, e.g. a hash)."""

    def __init__(self, pattern: str):
        import re

        self._pattern = re.compile(pattern)

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and bool(self._pattern.fullmatch(other))

    def __repr__(self) -> str:
        return f"Matches({self._pattern.pattern!r})"


# The hashed part of a creation tag (actions/once.py).
ANY_TAG = Matches(r"[0-9a-f]{40}")
