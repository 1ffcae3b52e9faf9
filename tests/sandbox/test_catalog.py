"""The seeded catalog has what the tests and `make run` rely on."""

from __future__ import annotations

import json

import pytest

from sandbox import describe_catalog
from sandbox.catalog import load_catalog


def test_seeded_catalog():
    catalog = load_catalog()
    assert catalog.plans["plan-free"].pricing_type == "FREE"
    pro = catalog.plans["plan-pro"]
    assert pro.billing_periods == ("MONTHLY", "ANNUALLY")
    assert set(pro.compatible_addons) == {"addon-seats", "addon-storage"}
    enterprise = catalog.plans["plan-enterprise"]
    assert enterprise.billing_periods == ("ANNUALLY",)
    assert "addon-storage" not in enterprise.compatible_addons
    assert set(catalog.addons) == {"addon-seats", "addon-storage"}
    assert set(catalog.custom_currencies) == {"cred-type-ai-tokens"}


def test_describe_catalog_names_everything():
    text = "\n".join(describe_catalog())
    for ref in (
        "plan-free",
        "plan-pro",
        "plan-enterprise",
        "addon-seats",
        "addon-storage",
        "cred-type-ai-tokens",
    ):
        assert ref in text
    assert "49 USD/month" in text


def test_custom_catalog_file(tmp_path):
    raw = {
        "environmentId": "00000000-0000-4000-8000-000000000001",
        "plans": [
            {"refId": "p", "displayName": "P", "pricingType": "FREE", "compatibleAddons": ["a"]}
        ],
        "addons": [],
        "customCurrencies": [],
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="unknown compatible add-ons"):
        load_catalog(path)
