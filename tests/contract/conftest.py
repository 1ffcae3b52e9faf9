"""Shared fixtures for the contract checks of the Salesforce DX project in sfdx/.

Every check reads the OpenAPI document registered in sfdx/ (`make sfdx` generates it from the
service; test_registration_drift fails while it is stale), so the Flow and Apex are held
against the spec Salesforce will actually see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.contract import sfdx

# SDR 12.37's decomposed registration always names the spec <Registration>.yaml; its content
# is JSON (valid YAML), as app.sfdx_registration writes it.
REGISTERED_SPEC = sfdx.ESR_DIR / f"{sfdx.REGISTRATION}.yaml"


def spec_path() -> Path:
    """The OpenAPI document the checks hold sfdx/ against."""
    return REGISTERED_SPEC


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


@pytest.fixture(scope="session")
def bulk_flow() -> sfdx.Flow:
    return sfdx.Flow.load(sfdx.BULK_FLOW_FILE)


@pytest.fixture(scope="session")
def writeback_flow() -> sfdx.Flow:
    return sfdx.Flow.load(sfdx.WRITEBACK_FLOW_FILE)


@pytest.fixture(params=sfdx.FLOW_FILES, ids=lambda path: path.name.split(".")[0])
def any_flow(request) -> sfdx.Flow:
    """Every flow in sfdx/: the platform rules hold for all of them."""
    return sfdx.Flow.load(request.param)


@pytest.fixture(params=[sfdx.FLOW_FILE, sfdx.BULK_FLOW_FILE], ids=["single", "bulk"])
def template(request) -> sfdx.Flow:
    """The two Closed Won templates."""
    return sfdx.Flow.load(request.param)


@pytest.fixture(scope="session")
def closed_lost_flow() -> sfdx.Flow:
    return sfdx.Flow.load(sfdx.CLOSED_LOST_FLOW_FILE)


@pytest.fixture(
    params=[sfdx.FLOW_FILE, sfdx.CLOSED_LOST_FLOW_FILE], ids=["closed-won", "closed-lost-cancel"]
)
def service_flow(request) -> sfdx.Flow:
    """Every flow that calls StiggActions (the External Service): the spec cross-checks."""
    return sfdx.Flow.load(request.param)


@pytest.fixture(
    params=[sfdx.FLOW_FILE, sfdx.BULK_FLOW_FILE, sfdx.CLOSED_LOST_FLOW_FILE],
    ids=["single", "bulk", "closed-lost-cancel"],
)
def record_triggered_template(request) -> sfdx.Flow:
    """The Draft templates a record change starts, each making its callouts asynchronously."""
    return sfdx.Flow.load(request.param)
