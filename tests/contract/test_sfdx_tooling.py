"""Run the offline Node checks of sfdx/ (SDR conversion and the Apex parser) from pytest.

`npm ci` installs the pinned tools the first time (the npm registry must be reachable then).
Skipped only when Node itself is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tests.contract import sfdx

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
EXPECTED_MEMBERS = {
    "ApexClass": {"StiggActionsClient", "StiggActionsClientTest"},
    "CustomField": {
        "Account.Stigg_Customer_ID__c",
        "Account.Stigg_Customer_URL__c",
        "Opportunity.Stigg_Provisioning_Error__c",
        "OpportunityLineItem.Stigg_ID__c",
        "OpportunityLineItem.Stigg_Type__c",
        "Product2.Stigg_ID__c",
        "Product2.Stigg_Type__c",
    },
    "ExternalCredential": {"StiggActions"},
    "ExternalServiceRegistration": {"StiggActions"},
    "Flow": {"Stigg_Opportunity_Closed_Won"},
    "NamedCredential": {"StiggActions"},
    "PermissionSet": {"Stigg_Actions"},
}

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def _run(*args: str, cwd=sfdx.SFDX_DIR, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_UPDATE_NOTIFIER": "1"},
    )


@pytest.fixture(scope="module")
def node_tools() -> None:
    if not (sfdx.SFDX_DIR / "node_modules" / "@salesforce" / "source-deploy-retrieve").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not"
        done = _run(npm, "ci", "--no-audit", "--no-fund", timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def converted(node_tools) -> subprocess.CompletedProcess:
    return _run("node", "scripts/convert.mjs")


def test_sdr_converts_the_project(converted):
    assert converted.returncode == 0, converted.stderr


def test_package_xml_lists_every_component(converted):
    package = ET.fromstring(converted.stdout)
    members = {
        text.text: {m.text for m in types.findall("md:members", NS)}
        for types in package.findall("md:types", NS)
        for text in types.findall("md:name", NS)
    }
    for type_name, names in EXPECTED_MEMBERS.items():
        assert names <= members.get(type_name, set()), (
            f"{type_name}: {names - members.get(type_name, set())}"
        )
    project_version = json.loads((sfdx.SFDX_DIR / "sfdx-project.json").read_text())
    assert package.find("md:version", NS).text == project_version["sourceApiVersion"]


def test_registration_spec_is_inlined_on_conversion(converted):
    built = sfdx.SFDX_DIR / ".build" / "metadata" / "externalServiceRegistrations"
    esr = ET.parse(built / "StiggActions.externalServiceRegistration").getroot()
    schema = esr.find("md:schema", NS).text
    assert '"openapi"' in schema and "/v1/actions/create-subscription" in schema


def test_apex_parses(node_tools):
    parsed = _run("node", "scripts/parse-apex.mjs")
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr
    assert (
        "StiggActionsClient.cls" in parsed.stdout and "StiggActionsClientTest.cls" in parsed.stdout
    )


def test_apex_parser_rejects_a_syntax_error(node_tools, tmp_path):
    broken = tmp_path / "Broken.cls"
    broken.write_text("public class Broken { String x = ; }\n")
    (tmp_path / "Broken.cls-meta.xml").write_text("<ApexClass/>\n")
    parsed = _run("node", "scripts/parse-apex.mjs", str(broken))
    assert parsed.returncode != 0
    assert "Broken.cls:1:" in parsed.stderr


def test_convert_fails_on_a_file_sdr_cannot_resolve(node_tools, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(sfdx.SFDX_DIR, project, ignore=shutil.ignore_patterns("node_modules", ".build"))
    (project / "node_modules").symlink_to(sfdx.SFDX_DIR / "node_modules")
    # SDR itself skips such a file silently; convert.mjs must not.
    (project / "force-app/main/default/flows/Stray.flow-meta.txt").write_text("<Flow/>\n")
    done = _run("node", "scripts/convert.mjs", cwd=project)
    assert done.returncode != 0
    assert "Stray.flow-meta.txt" in done.stderr


def test_convert_fails_when_an_expected_component_is_missing(node_tools, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(sfdx.SFDX_DIR, project, ignore=shutil.ignore_patterns("node_modules", ".build"))
    (project / "node_modules").symlink_to(sfdx.SFDX_DIR / "node_modules")
    (project / "force-app/main/default/flows/Stigg_Opportunity_Closed_Won.flow-meta.xml").unlink()
    done = _run("node", "scripts/convert.mjs", cwd=project)
    assert done.returncode != 0
    assert "Flow:Stigg_Opportunity_Closed_Won" in done.stderr
