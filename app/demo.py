"""The Closed Won path, played against a running service the way the sample Flow does it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import requests

ACCOUNT_WITH_EMAIL = "001D000000IqhSLIAZ"
ACCOUNT_WITHOUT_EMAIL = "001D000000IqhSM"
OPPORTUNITY = "006D000000CkYtrIAF"


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
            "Create Stigg Credit Grant",
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
    ]


def play(*, base_url: str, caller_key: str, out=print) -> int:
    failures = 0
    with requests.Session() as session:
        for number, (title, path, body) in enumerate(steps(), start=1):
            response = session.post(
                f"{base_url}/v1/actions/{path}",
                json=body,
                headers={
                    "Authorization": f"Bearer {caller_key}",
                    "Idempotency-Key": f"{OPPORTUNITY}-{path}",
                },
                timeout=60,
            )
            out(f"{number}. {title}: POST /v1/actions/{path} -> HTTP {response.status_code}")
            out("   sent:     " + json.dumps(body))
            out("   received: " + response.text.strip())
            failures += response.status_code != 200
    out("Closed Won path complete." if not failures else f"{failures} step(s) failed.")
    return 1 if failures else 0
