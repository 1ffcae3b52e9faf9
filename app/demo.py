"""The Closed Won path, played against a running service the way the sample Flow does it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import requests

ACCOUNT_WITH_EMAIL = "001D000000IqhSLIAZ"
ACCOUNT_WITHOUT_EMAIL = "001D000000IqhSM"
OPPORTUNITY = "006D000000CkYtrIAF"
GRANT_STEP = "Create Stigg Credit Grant"


def steps() -> list[tuple[str, str, dict]]:
    trial_end = (datetime.now(UTC) + timedelta(days=14)).date().isoformat()
    return [
        (
            "Create Stigg Customer with email",
            "create-customer-with-email",
            {
                "salesforceAccountId": ACCOUNT_WITH_EMAIL,
                "customerName": "Acme Corp",
                "customerEmail": "billing@acme.example",
            },
        ),
        (
            "Create Stigg Customer without email",
            "create-customer-without-email",
            {"salesforceAccountId": ACCOUNT_WITHOUT_EMAIL, "customerName": "Globex"},
        ),
        (
            "Create Stigg Subscription (add-ons, trial, credit entitlements)",
            "create-subscription",
            {
                "salesforceAccountId": ACCOUNT_WITH_EMAIL,
                "salesforceOpportunityId": OPPORTUNITY,
                "customerName": "Acme Corp",
                "customerEmail": "billing@acme.example",
                "planId": "plan-pro",
                "billingPeriod": "Monthly",
                "paymentCollectionMethod": "INVOICE",
                "addons": [{"addonId": "addon-seats", "quantity": 5}],
                "trial": True,
                "trialEndDate": trial_end,
                "subscriptionCreditEntitlements": [
                    {"customCurrencyId": "cred-type-ai-tokens", "amount": 1000, "cadence": "MONTH"}
                ],
            },
        ),
        (
            GRANT_STEP,
            "create-credit-grant",
            {
                "stiggCustomerId": ACCOUNT_WITH_EMAIL,
                "grantType": "PROMOTIONAL",
                "currencyId": "cred-type-ai-tokens",
                "displayName": "Closed Won welcome credits",
                "amount": 500,
                "comment": f"Opportunity {OPPORTUNITY}",
            },
        ),
        # After Closed Won: the same Account buys seats mid-term, a Stigg workflow runs, and
        # the renewal is lost (a subscription in trial is cancelled immediately).
        (
            "Update Stigg Subscription (seats 5 -> 12, storage added)",
            "update-subscription",
            {
                "salesforceAccountId": ACCOUNT_WITH_EMAIL,
                "addons": [
                    {"addonId": "addon-seats", "quantity": 12},
                    {"addonId": "addon-storage", "quantity": 1},
                ],
            },
        ),
        (
            "Trigger Stigg Workflow",
            "trigger-stigg-workflow",
            {
                "triggerId": "wf-seat-change",
                "payloadJson": json.dumps({"customerId": ACCOUNT_WITH_EMAIL, "seats": 12}),
            },
        ),
        (
            "Cancel Stigg Subscription (renewal lost)",
            "cancel-subscription",
            {"salesforceAccountId": ACCOUNT_WITH_EMAIL, "cancellationTime": "IMMEDIATE"},
        ),
    ]


def play(*, base_url: str, caller_key: str, out=print) -> int:
    # Keys as the sample Flow builds them (Opportunity + action), plus a run ID so that a
    # second demo run is a new Closed Won rather than a replay of the first.
    run_id = uuid.uuid4().hex[:8]
    failures = 0
    with requests.Session() as session:

        def send(path: str, body: dict) -> requests.Response:
            return session.post(
                f"{base_url}/v1/actions/{path}",
                json=body,
                headers={
                    "Authorization": f"Bearer {caller_key}",
                    "Idempotency-Key": f"{OPPORTUNITY}-{path}-{run_id}",
                },
                timeout=60,
            )

        for number, (title, path, body) in enumerate(steps(), start=1):
            try:
                response = send(path, body)
            except requests.ConnectionError:
                out(f"Cannot reach the service at {base_url}; start it with `make run`.")
                return 2
            out(f"{number}. {title}: POST /v1/actions/{path} -> HTTP {response.status_code}")
            out("   sent:     " + json.dumps(body))
            out("   received: " + response.text.strip())
            failures += response.status_code != 200

        # Salesforce retries: the same key and body must not grant twice.
        title, path, body = next(step for step in steps() if step[0] == GRANT_STEP)
        again = send(path, body)
        replayed = again.headers.get("Idempotent-Replayed") == "true"
        out(
            f"{number + 1}. {title} again (same key) -> HTTP {again.status_code}, "
            f"replayed: {replayed}"
        )
        out("   received: " + again.text.strip())
        failures += not (again.status_code == 200 and replayed)
    out("Closed Won path complete." if not failures else f"{failures} step(s) failed.")
    return 1 if failures else 0
