"""Shared fixtures for the contract checks of the Salesforce DX project in sfdx/.

Every check reads the OpenAPI document through `spec_path()`: the spec registered in
sfdx/ (generated from the service) when present, else the hand-made fixture.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.contract import sfdx

FIXTURE_SPEC = Path(__file__).parent / "fixtures" / "stigg-actions.openapi.json"
# SDR 12.37's decomposed registration always names the spec <Registration>.yaml (its content
# may be JSON, which is valid YAML); .json is accepted here in case a later SDR changes that.
REGISTERED_SPECS = (
    sfdx.ESR_DIR / "StiggActions.yaml",
    sfdx.ESR_DIR / "StiggActions.json",
)


def spec_path() -> Path:
    """The OpenAPI document the checks hold sfdx/ against."""
    for candidate in REGISTERED_SPECS:
        if candidate.is_file():
            return candidate
    return FIXTURE_SPEC


def load_spec(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return yaml.safe_load(text)


@pytest.fixture(scope="session")
def spec() -> sfdx.Spec:
    path = spec_path()
    return sfdx.Spec(load_spec(path), path)


@pytest.fixture(scope="session")
def flow() -> sfdx.Flow:
    return sfdx.Flow.load(sfdx.FLOW_FILE)
