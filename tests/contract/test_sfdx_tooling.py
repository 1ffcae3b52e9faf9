"""Run the offline Node checks of sfdx/ from pytest: SDR conversion, the Apex parser, Salesforce
Code Analyzer (PMD and Flow engines, Java 17 and Python >= 3.10) and Lightning Flow Scanner.

`npm ci` installs the pinned tools the first time (the npm registry must be reachable then).
Skipped only when Node itself is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from tests.contract import sfdx

NS = {"md": "http://soap.sforce.com/2006/04/metadata"}
EXPECTED_MEMBERS = {
    "ApexClass": {
        "StiggBatchClient", "StiggBatchMock", "StiggBatchPoller", "StiggBatchPollerTest",
        "StiggBulkProvisioning", "StiggBulkProvisioningTest", "StiggProvisioningEvents",
    },
    "CustomField": {
        "Account.Stigg_Customer_ID__c",
        "Account.Stigg_Customer_URL__c",
        "Opportunity.Stigg_Provisioning_Error__c",
        "Opportunity.Stigg_Provisioning_Status__c",
        "Opportunity.Stigg_Subscription_ID__c",
        "Opportunity.Stigg_Subscription_URL__c",
        "OpportunityLineItem.Stigg_ID__c",
        "OpportunityLineItem.Stigg_Type__c",
        "Product2.Stigg_ID__c",
        "Product2.Stigg_Type__c",
        "Stigg_Bulk_Setting__mdt.Max_Poll_Age_Minutes__c",
        "Stigg_Bulk_Setting__mdt.Prefer_Wait_Seconds__c",
        "Stigg_Provisioning_Result__e.Status__c",
        "Stigg_Provisioning_Result__e.Salesforce_Record_ID__c",
    },
    "CustomMetadata": {"Stigg_Bulk_Setting.Default"},
    "CustomObject": {"Stigg_Bulk_Setting__mdt", "Stigg_Provisioning_Result__e"},
    "ExternalCredential": {"StiggActions"},
    "ExternalServiceRegistration": {"StiggActions"},
    "Flow": {
        "Stigg_Opportunity_Closed_Lost_Cancel",
        "Stigg_Opportunity_Closed_Won",
        "Stigg_Opportunity_Closed_Won_Bulk",
        "Stigg_Provisioning_Result_Writeback",
    },
    "NamedCredential": {"StiggActions"},
    "PermissionSet": {"Stigg_Actions"},
}  # fmt: skip
SETUP_GUIDE = sfdx.ROOT / "docs" / "salesforce-setup.md"

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


def _missing_node_packages() -> list[str]:
    package = json.loads((sfdx.SFDX_DIR / "package.json").read_text())
    installed = sfdx.SFDX_DIR / "node_modules"
    return [
        name
        for name, version in package["devDependencies"].items()
        if not (installed / name / "package.json").is_file()
        or json.loads((installed / name / "package.json").read_text())["version"] != version
    ]


@pytest.fixture(scope="module")
def node_tools() -> None:
    if _missing_node_packages():
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
    classes = sorted(path.name for path in sfdx.CLASSES_DIR.glob("*.cls"))
    assert classes
    for name in classes:
        assert f"ok force-app/main/default/classes/{name}" in parsed.stdout, name
    assert f"parse-apex: {len(classes)} files parsed without errors" in parsed.stdout


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


# --- Salesforce Code Analyzer ------------------------------------------------------------

HIGH_SEVERITY_APEX = """public with sharing class Eager {
    public static String prefix() {
        return Account.SObjectType.getDescribe().getKeyPrefix();
    }
}
"""
# A screen flow passing what the user typed into a record create in system mode without sharing:
# the Flow engine's PreventPassingUserDataIntoElementWithoutSharing (severity 2).
LEAKY_FLOW = """<?xml version="1.0" encoding="UTF-8"?>
<Flow xmlns="http://soap.sforce.com/2006/04/metadata">
    <apiVersion>62.0</apiVersion>
    <label>Leaky</label>
    <processType>Flow</processType>
    <recordCreates>
        <name>Create_Account</name><label>Create Account</label>
        <locationX>0</locationX><locationY>0</locationY>
        <inputAssignments><field>Name</field>
            <value><elementReference>Account_Name</elementReference></value></inputAssignments>
        <object>Account</object>
    </recordCreates>
    <runInMode>SystemModeWithoutSharing</runInMode>
    <screens>
        <name>Ask</name><label>Ask</label><locationX>0</locationX><locationY>0</locationY>
        <allowBack>true</allowBack><allowFinish>true</allowFinish><allowPause>true</allowPause>
        <connector><targetReference>Create_Account</targetReference></connector>
        <fields><name>Account_Name</name><dataType>String</dataType><fieldText>Name</fieldText>
            <fieldType>InputField</fieldType><isRequired>true</isRequired></fields>
        <showFooter>true</showFooter><showHeader>true</showHeader>
    </screens>
    <start><locationX>0</locationX><locationY>0</locationY>
        <connector><targetReference>Ask</targetReference></connector></start>
    <status>Active</status>
</Flow>
"""


def _documented(tool: str) -> set[str]:
    """Rules the admin guide lists as remaining warnings, written `tool:Rule` in its tables."""
    return set(re.findall(rf"`{tool}:(\w+)`", SETUP_GUIDE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def code_analyzer(node_tools) -> tuple[subprocess.CompletedProcess, dict]:
    done = _run("node", "scripts/code-analyzer.mjs", timeout=600)
    return done, json.loads(done.stdout or "{}")


def test_code_analyzer_finds_no_severity_1_or_2_violation(code_analyzer):
    done, report = code_analyzer
    assert done.returncode == 0, done.stderr
    engines = {engine["name"]: engine["version"] for engine in report["engines"]}
    assert engines == {"pmd": "0.46.0", "flow": "0.22.0"}
    assert report["rules"] >= 60, "the Recommended rules of both engines"
    assert not [v for v in report["violations"] if v["severity"] <= 2]


def test_remaining_code_analyzer_warnings_are_listed_in_the_admin_guide(code_analyzer):
    _, report = code_analyzer
    remaining = {f"{v['engine']}:{v['rule']}" for v in report["violations"]}
    documented = {f"pmd:{rule}" for rule in _documented("pmd")} | {
        f"flow:{rule}" for rule in _documented("flow")
    }
    assert remaining <= documented, f"not explained in {SETUP_GUIDE.name}: {remaining - documented}"
    assert documented <= remaining, f"listed but gone (drop them): {documented - remaining}"


def test_code_analyzer_fails_on_severity_2_in_apex_and_in_a_flow(node_tools, tmp_path):
    (tmp_path / "Eager.cls").write_text(HIGH_SEVERITY_APEX)
    (tmp_path / "Leaky.flow-meta.xml").write_text(LEAKY_FLOW)
    done = _run("node", "scripts/code-analyzer.mjs", str(tmp_path), timeout=600)
    assert done.returncode == 1, done.stderr
    found = {(v["rule"], v["severity"]) for v in json.loads(done.stdout)["violations"]}
    assert ("EagerlyLoadedDescribeSObjectResult", 2) in found
    assert ("PreventPassingUserDataIntoElementWithoutSharing", 2) in found, "the Flow engine ran"


# --- Lightning Flow Scanner --------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_scanner(node_tools) -> tuple[subprocess.CompletedProcess, dict]:
    done = _run("node", "scripts/flow-scanner.mjs")
    return done, json.loads(done.stdout or "{}")


def test_flow_scanner_finds_no_error_in_any_flow(flow_scanner):
    done, report = flow_scanner
    assert done.returncode == 0, done.stderr
    assert report["flows"] == len(sfdx.FLOW_FILES)
    assert len(report["rules"]) == 22, "lightning-flow-scanner-core 5.9.7's default rules"
    assert not [r for r in report["results"] if r["severity"] == "error"]


def test_flow_scanner_exceptions_excuse_only_the_draft_templates(flow_scanner):
    _, report = flow_scanner
    assert set(report["exceptions"]) == {
        path.name.split(".")[0]
        for path in (sfdx.FLOW_FILE, sfdx.BULK_FLOW_FILE, sfdx.CLOSED_LOST_FLOW_FILE)
    }
    for name, rules in report["exceptions"].items():
        assert rules == {"InactiveFlow": ["Draft"]}, name
        flow = sfdx.Flow.load(sfdx.FLOWS_DIR / f"{name}.flow-meta.xml")
        assert sfdx.text(flow.root, "status") == "Draft", name


def test_remaining_flow_scanner_results_are_listed_in_the_admin_guide(flow_scanner):
    _, report = flow_scanner
    remaining = {r["rule"] for r in report["results"]}
    documented = _documented("flow-scanner")
    assert remaining <= documented, f"not explained in {SETUP_GUIDE.name}: {remaining - documented}"
    assert documented <= remaining | {"InactiveFlow"}, documented - remaining


def test_flow_scanner_fails_on_a_missing_fault_path(node_tools, tmp_path):
    broken = tmp_path / "Stigg_Provisioning_Result_Writeback.flow-meta.xml"
    xml = sfdx.WRITEBACK_FLOW_FILE.read_text()
    xml = re.sub(
        r"(<name>Get_Opportunity</name>.*?)<faultConnector>.*?</faultConnector>",
        r"\1",
        xml,
        count=1,
        flags=re.S,
    )
    broken.write_text(xml)
    done = _run("node", "scripts/flow-scanner.mjs", str(broken))
    assert done.returncode == 1
    errors = {(r["rule"], r["element"]) for r in json.loads(done.stdout)["results"]}
    assert ("MissingFaultPath", "Get_Opportunity") in errors
