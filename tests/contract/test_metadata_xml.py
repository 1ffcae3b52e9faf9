"""Values and element order of the non-Flow metadata in sfdx/ (reference §2.1-2.4, §3)."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from tests.contract import sfdx
from tests.contract.sfdx import NS, parse, text

API_VERSION_FILE = sfdx.SFDX_DIR / "sfdx-project.json"
ESR_FILE = sfdx.ESR_DIR / "StiggActions.externalServiceRegistration-meta.xml"
NC_FILE = sfdx.DEFAULT_DIR / "namedCredentials" / "StiggActions.namedCredential-meta.xml"
EC_FILE = sfdx.DEFAULT_DIR / "externalCredentials" / "StiggActions.externalCredential-meta.xml"
PS_FILE = sfdx.DEFAULT_DIR / "permissionsets" / "Stigg_Actions.permissionset-meta.xml"

ESR_ORDER = [
    "description", "label", "namedCredential", "namedCredentialReference", "operations",
    "registrationProvider", "registrationProviderType", "schema", "schemaType",
    "schemaUploadFileExtension", "schemaUploadFileName", "schemaUrl", "serviceBinding", "status",
    "systemVersion",
]  # fmt: skip
NC_ORDER = [
    "allowMergeFieldsInBody", "allowMergeFieldsInHeader", "calloutStatus",
    "generateAuthorizationHeader", "label", "namedCredentialParameters", "namedCredentialType",
]  # fmt: skip
NC_PARAMETER_ORDER = ["externalCredential", "parameterName", "parameterType", "parameterValue"]
EC_ORDER = ["authenticationProtocol", "description", "externalCredentialParameters", "label"]
EC_PARAMETER_ORDER = [
    "parameterGroup",
    "parameterName",
    "parameterType",
    "parameterValue",
    "sequenceNumber",
]
PS_ORDER = [
    "classAccesses", "description", "externalCredentialPrincipalAccesses", "fieldPermissions",
    "hasActivationRequired", "label", "objectPermissions",
]  # fmt: skip
PS_CHILD_ORDERS = {
    "classAccesses": ["apexClass", "enabled"],
    "externalCredentialPrincipalAccesses": ["enabled", "externalCredentialPrincipal"],
    "fieldPermissions": ["editable", "field", "readable"],
    "objectPermissions": [
        "allowCreate", "allowDelete", "allowEdit", "allowRead", "modifyAllRecords", "object",
        "viewAllFields", "viewAllRecords",
    ],
}  # fmt: skip
API_VERSION = re.compile(r"^\d+\.0$")
# CustomField, CustomObject and CustomMetadata children in XSD order (the elements sfdx/ uses).
FIELD_ORDER = [
    "fullName", "defaultValue", "description", "externalId", "fieldManageability", "formula",
    "formulaTreatBlanksAs", "inlineHelpText", "label", "length", "precision", "required", "scale",
    "trackHistory", "trackTrending", "type", "unique", "valueSet", "visibleLines",
]  # fmt: skip
OBJECT_ORDER = [
    "deploymentStatus", "description", "eventType", "label", "pluralLabel", "publishBehavior",
    "visibility",
]  # fmt: skip
CUSTOM_METADATA_ORDER = ["label", "protected", "values"]
EVENT_DIR = sfdx.DEFAULT_DIR / "objects" / sfdx.EVENT
SETTING_DIR = sfdx.DEFAULT_DIR / "objects" / "Stigg_Bulk_Setting__mdt"
SETTING_RECORD = sfdx.DEFAULT_DIR / "customMetadata" / "Stigg_Bulk_Setting.Default.md-meta.xml"


def _all_meta_files():
    return sorted(sfdx.DEFAULT_DIR.rglob("*-meta.xml"))


# --- spec --------------------------------------------------------------------------------


def test_spec_is_valid_openapi_3_0(spec):
    assert str(spec.document["openapi"]).startswith("3.0."), "External Services reads 3.0, not 3.1"
    validate(spec.document)


def test_spec_operations_are_flow_friendly(spec):
    operations = spec.operations()
    assert operations
    for operation_id, operation in operations.items():
        assert re.fullmatch(r"[a-z][A-Za-z0-9]*", operation_id), f"{operation_id}: not lowerCamel"
        assert set(operation.responses) >= {"200", "4XX", "5XX"}, operation_id
        for code in ("4XX", "5XX"):
            assert operation.responses[code] is spec.schemas["Error"], f"{operation_id} {code}"
        assert "Idempotency-Key" in operation.inputs, operation_id


# --- External Service registration -------------------------------------------------------


def test_registration_operations_match_spec_operation_ids(spec):
    root = parse(ESR_FILE)
    names = [text(op, "name") for op in root.findall(NS + "operations")]
    expected = sorted(sfdx.operation_name(op) for op in spec.operations())
    assert sorted(names) == expected
    assert len(names) == len(set(names))
    assert {text(op, "active") for op in root.findall(NS + "operations")} == {"true"}


def test_registration_values_and_order():
    root = parse(ESR_FILE)
    assert not sfdx.order_errors(root, ESR_ORDER, "ExternalServiceRegistration")
    assert text(root, "label") == sfdx.REGISTRATION
    assert text(root, "namedCredentialReference") == "StiggActions"
    assert root.find(NS + "namedCredential") is None, "legacy element; use namedCredentialReference"
    assert text(root, "registrationProviderType") == "Custom"
    assert text(root, "schemaType") == "OpenApi3"
    assert text(root, "schemaUploadFileExtension") in {"json", "yaml"}
    assert text(root, "status") == "Complete"
    json.loads(text(root, "serviceBinding"))
    # Decomposed source format: the spec is the sibling file, not inline.
    assert root.find(NS + "schema") is None


def test_registration_is_decomposed_with_the_file_name_sdr_expects():
    project = json.loads(API_VERSION_FILE.read_text())
    assert "decomposeExternalServiceRegistrationBeta" in project.get("sourceBehaviorOptions", [])
    assert (sfdx.ESR_DIR / "StiggActions.yaml").is_file()
    # SDR 12.37 rewrites the first "yaml" of a path to find the parent file.
    relative = sfdx.ESR_DIR.relative_to(sfdx.SFDX_DIR)
    assert "yaml" not in str(relative).lower()


# --- Named and External Credential -------------------------------------------------------


def test_named_credential():
    root = parse(NC_FILE)
    errors = sfdx.order_errors(root, NC_ORDER, "NamedCredential")
    for parameter in root.findall(NS + "namedCredentialParameters"):
        errors += sfdx.order_errors(parameter, NC_PARAMETER_ORDER, "namedCredentialParameters")
    assert not errors, errors
    assert text(root, "namedCredentialType") == "SecuredEndpoint"
    assert text(root, "calloutStatus") == "Enabled"
    assert text(root, "generateAuthorizationHeader") == "false"
    assert text(root, "allowMergeFieldsInHeader") == "true"
    parameters = {
        text(p, "parameterType"): p for p in root.findall(NS + "namedCredentialParameters")
    }
    assert set(parameters) == {"Url", "Authentication"}
    assert text(parameters["Url"], "parameterName") == "Url"
    assert text(parameters["Url"], "parameterValue").startswith("https://")
    assert not text(parameters["Url"], "parameterValue").endswith("/")
    assert text(parameters["Authentication"], "parameterName") == "ExternalCredential"
    assert text(parameters["Authentication"], "externalCredential") == EC_FILE.name.split(".")[0]


def test_external_credential():
    root = parse(EC_FILE)
    errors = sfdx.order_errors(root, EC_ORDER, "ExternalCredential")
    for parameter in root.findall(NS + "externalCredentialParameters"):
        errors += sfdx.order_errors(parameter, EC_PARAMETER_ORDER, "externalCredentialParameters")
    assert not errors, errors
    assert text(root, "authenticationProtocol") == "Custom"
    parameters = root.findall(NS + "externalCredentialParameters")
    principals = [p for p in parameters if text(p, "parameterType") == "NamedPrincipal"]
    assert [text(p, "parameterName") for p in principals] == ["StiggActionsService"]
    (header,) = [p for p in parameters if text(p, "parameterType") == "AuthHeader"]
    assert text(header, "parameterName") == "Authorization"
    assert text(header, "parameterGroup") == "DefaultGroup"
    assert text(header, "parameterValue") == "{!'Bearer ' & $Credential.StiggActions.ApiKey}"


# --- Permission set ----------------------------------------------------------------------


def _custom_fields():
    """Fields with field-level security: not those of the platform event or custom metadata type."""
    return sorted(
        f"{path.parent.parent.name}.{path.name.removesuffix('.field-meta.xml')}"
        for path in (sfdx.DEFAULT_DIR / "objects").glob("*/fields/*.field-meta.xml")
        if not path.parent.parent.name.endswith(("__e", "__mdt"))
    )


def test_permission_set():
    root = parse(PS_FILE)
    errors = sfdx.order_errors(root, PS_ORDER, "PermissionSet")
    for child in root:
        tag = sfdx.local(child.tag)
        if tag in PS_CHILD_ORDERS:
            errors += sfdx.order_errors(child, PS_CHILD_ORDERS[tag], tag)
    assert not errors, errors
    ec = parse(EC_FILE)
    principal = next(
        text(p, "parameterName")
        for p in ec.findall(NS + "externalCredentialParameters")
        if text(p, "parameterType") == "NamedPrincipal"
    )
    accesses = root.findall(NS + "externalCredentialPrincipalAccesses")
    assert [(text(a, "externalCredentialPrincipal"), text(a, "enabled")) for a in accesses] == [
        (f"StiggActions-{principal}", "true")
    ]
    classes = {
        text(c, "apexClass")
        for c in root.findall(NS + "classAccesses")
        if text(c, "enabled") == "true"
    }
    assert classes == {"StiggBulkProvisioning"}, "the invocable action is the one class users call"
    for name in classes:
        assert (sfdx.DEFAULT_DIR / "classes" / f"{name}.cls").is_file(), name
    objects = {text(o, "object"): o for o in root.findall(NS + "objectPermissions")}
    assert text(objects["UserExternalCredential"], "allowRead") == "true"
    granted = {text(f, "field"): f for f in root.findall(NS + "fieldPermissions")}
    assert sorted(granted) == _custom_fields()
    for field, permission in granted.items():
        obj, name = field.split(".")
        meta = parse(sfdx.DEFAULT_DIR / "objects" / obj / "fields" / f"{name}.field-meta.xml")
        assert text(permission, "readable") == "true", field
        if meta.find(NS + "formula") is not None:
            assert text(permission, "editable") == "false", f"{field} is a formula"


# --- custom fields -----------------------------------------------------------------------

PICKLIST_VALUES = {
    "Product2.Stigg_Type__c": ["Plan", "Add-on", "Credit entitlement"],
    "Opportunity.Stigg_Provisioning_Status__c": ["QUEUED", "SUCCEEDED", "FAILED"],
}
FIELD_TYPES = {
    "Account.Stigg_Customer_ID__c": "Text",
    "Account.Stigg_Customer_URL__c": "Url",
    "Opportunity.Stigg_Provisioning_Error__c": "LongTextArea",
    "Opportunity.Stigg_Provisioning_Status__c": "Picklist",
    "Opportunity.Stigg_Subscription_ID__c": "Text",
    "Opportunity.Stigg_Subscription_URL__c": "Url",
    "OpportunityLineItem.Stigg_ID__c": "Text",
    "OpportunityLineItem.Stigg_Type__c": "Text",
    "Product2.Stigg_ID__c": "Text",
    "Product2.Stigg_Type__c": "Picklist",
}


@pytest.mark.parametrize("field", sorted(FIELD_TYPES))
def test_custom_field(field):
    obj, name = field.split(".")
    root = parse(sfdx.DEFAULT_DIR / "objects" / obj / "fields" / f"{name}.field-meta.xml")
    assert text(root, "fullName") == name
    assert text(root, "type") == FIELD_TYPES[field]
    assert text(root, "label")
    formula = text(root, "formula")
    if formula is not None:
        for parent_field in re.findall(r"Product2\.(\w+)", formula):
            assert (
                sfdx.DEFAULT_DIR / "objects/Product2/fields" / f"{parent_field}.field-meta.xml"
            ).is_file()
    elif FIELD_TYPES[field] == "Text":
        assert text(root, "length") == "255"
    if FIELD_TYPES[field] == "LongTextArea":
        assert text(root, "length") == "32768"
        assert int(text(root, "visibleLines")) > 0
    if FIELD_TYPES[field] == "Picklist":
        values = root.find(NS + "valueSet")
        assert text(values, "restricted") == "true"
        names = [text(v, "fullName") for v in values.iter(NS + "value")]
        assert names == PICKLIST_VALUES[field]


def test_flow_picklist_values_match_stigg_type():
    flow = sfdx.Flow.load(sfdx.FLOW_FILE)
    values = {
        text(c.find(NS + "rightValue"), "stringValue")
        for c in flow.root.iter(NS + "conditions")
        if text(c, "leftValueReference").endswith(".Stigg_Type__c")
    }
    assert values == {"Plan", "Add-on", "Credit entitlement"}


# --- API version -------------------------------------------------------------------------


def test_one_api_version_everywhere():
    project = json.loads(API_VERSION_FILE.read_text())
    version = project["sourceApiVersion"]
    assert API_VERSION.match(version)
    found = {}
    for path in _all_meta_files():
        api = text(parse(path), "apiVersion")
        if api is not None:
            found[path.relative_to(sfdx.SFDX_DIR)] = api
    assert found, "no file carries an apiVersion"
    assert {str(p): v for p, v in found.items() if v != version} == {}
    assert sfdx.FLOW_FILE.relative_to(sfdx.SFDX_DIR) in found
    classes = sorted((sfdx.DEFAULT_DIR / "classes").glob("*.cls"))
    for cls in classes:
        meta = parse(cls.with_name(cls.name + "-meta.xml"))
        assert text(meta, "apiVersion") == version
        assert text(meta, "status") == "Active"


def test_every_meta_file_is_well_formed_metadata_xml():
    for path in _all_meta_files():
        root = parse(path)
        assert root.tag.startswith(NS), f"{path.name}: wrong namespace"


# --- element order of every field, object and custom metadata record ----------------------


def test_field_and_object_elements_follow_the_xsd_order():
    errors = []
    for path in sorted((sfdx.DEFAULT_DIR / "objects").rglob("*.field-meta.xml")):
        root = parse(path)
        errors += sfdx.order_errors(root, FIELD_ORDER, path.name)
        assert sfdx.child_tags(root)[0] == "fullName", path.name
        assert text(root, "fullName") == path.name.removesuffix(".field-meta.xml")
    for path in sorted((sfdx.DEFAULT_DIR / "objects").rglob("*.object-meta.xml")):
        errors += sfdx.order_errors(parse(path), OBJECT_ORDER, path.name)
    for path in sorted((sfdx.DEFAULT_DIR / "customMetadata").glob("*.md-meta.xml")):
        root = parse(path)
        errors += sfdx.order_errors(root, CUSTOM_METADATA_ORDER, path.name)
        for values in root.findall(NS + "values"):
            errors += sfdx.order_errors(values, ["field", "value"], path.name)
    assert not errors, "\n".join(errors)


# --- the result platform event -----------------------------------------------------------

EVENT_FIELD_TYPES = {
    "Batch_ID__c": "Text", "Error_Code__c": "Text", "Error_Message__c": "Text",
    "Idempotency_Key__c": "Text", "Operation__c": "Text", "Retryable__c": "Checkbox",
    "Salesforce_Record_ID__c": "Text", "Status__c": "Text", "Stigg_Customer_ID__c": "Text",
    "Stigg_Customer_URL__c": "Text", "Stigg_Subscription_ID__c": "Text",
    "Stigg_Subscription_URL__c": "Text",
}  # fmt: skip


def test_platform_event_definition():
    root = parse(EVENT_DIR / f"{sfdx.EVENT}.object-meta.xml")
    assert text(root, "deploymentStatus") == "Deployed"
    assert text(root, "eventType") == "HighVolume"
    # Published even when the caller's transaction rolls back: Stigg's side happened anyway.
    assert text(root, "publishBehavior") == "PublishImmediately"
    assert text(root, "label") and text(root, "pluralLabel") and text(root, "description")


@pytest.mark.parametrize("field", sorted(EVENT_FIELD_TYPES))
def test_platform_event_field(field):
    root = parse(EVENT_DIR / "fields" / f"{field}.field-meta.xml")
    assert text(root, "type") == EVENT_FIELD_TYPES[field]
    assert text(root, "label") and text(root, "description")
    if EVENT_FIELD_TYPES[field] == "Text":
        expected = 18 if field == "Salesforce_Record_ID__c" else 255
        assert text(root, "length") == str(expected)
        assert text(root, "required") == "false", "a failure has no customer; nothing is required"
    else:
        assert text(root, "defaultValue") == "false"


def test_event_fields_are_the_platform_event_files():
    files = {p.name.removesuffix(".field-meta.xml") for p in (EVENT_DIR / "fields").iterdir()}
    assert files == set(EVENT_FIELD_TYPES)


# --- the bulk settings (custom metadata) -------------------------------------------------


def test_bulk_settings_type_and_default_record():
    root = parse(SETTING_DIR / "Stigg_Bulk_Setting__mdt.object-meta.xml")
    assert text(root, "visibility") == "Public"
    fields = {
        p.name.removesuffix(".field-meta.xml"): parse(p)
        for p in (SETTING_DIR / "fields").glob("*.field-meta.xml")
    }
    assert set(fields) == {"Prefer_Wait_Seconds__c", "Max_Poll_Age_Minutes__c"}
    for name, field in fields.items():
        assert text(field, "type") == "Number", name
        assert text(field, "scale") == "0", name
        assert text(field, "fieldManageability") == "SubscriberControlled", name
    record = parse(SETTING_RECORD)
    assert text(record, "label") == "Default"
    values = {text(v, "field"): float(text(v, "value")) for v in record.findall(NS + "values")}
    assert set(values) == set(fields), "the record sets every setting"
    assert 0 <= values["Prefer_Wait_Seconds__c"] <= 100, "the service caps Prefer: wait at 100 s"
    assert values["Max_Poll_Age_Minutes__c"] >= 1
    # The Apex reads the record by this name and these fields.
    client = (sfdx.CLASSES_DIR / "StiggBatchClient.cls").read_text()
    assert "Stigg_Bulk_Setting__mdt.getInstance('Default')" in client
    for name in fields:
        assert name in client, name
