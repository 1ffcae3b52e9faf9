"""The flows against the spec and the platform rules (reference §1.6-§2.5).

The structural rules (element order, connectors, fault paths, no DML before a callout) hold for
every flow in sfdx/; the spec cross-checks hold for every flow that calls StiggActions (the
single-call Closed Won template and the Closed Lost cancellation).

No offline tool validates Flow XML, and the Metadata API rejects an element out of XSD order
with XML_PARSER_ERROR, so the order table below is the reference's, checked element by element.
"""

from __future__ import annotations

import re

import pytest

from tests.contract import sfdx
from tests.contract.sfdx import NS, text

# Top level of <Flow>: alphabetical, as the XSD sequence (elements this project may use).
TOP_LEVEL_ORDER = [
    "actionCalls", "apiVersion", "assignments", "collectionProcessors", "constants", "decisions",
    "description", "environments", "formulas", "interviewLabel", "isTemplate", "label", "loops",
    "processMetadataValues", "processType", "recordCreates", "recordDeletes", "recordLookups",
    "recordUpdates", "runInMode", "start", "status", "textTemplates", "triggerOrder", "variables",
]  # fmt: skip
NODE_HEAD = ["description", "name", "elementSubtype", "label", "locationX", "locationY"]
NODE_FIELDS = {
    "actionCalls": [
        "actionName", "actionType", "connector", "dataTypeMappings", "faultConnector",
        "flowTransactionModel", "inputParameters", "nameSegment", "offset", "outputParameters",
        "storeOutputAutomatically", "versionString",
    ],
    "assignments": ["assignmentItems", "connector"],
    "decisions": ["defaultConnector", "defaultConnectorLabel", "rules"],
    "loops": [
        "assignNextValueToReference", "collectionReference", "iterationOrder",
        "nextValueConnector", "noMoreValuesConnector",
    ],
    "recordLookups": [
        "assignNullValuesIfNoRecordsFound", "connector", "faultConnector", "filterLogic", "filters",
        "getFirstRecordOnly", "limit", "object", "outputAssignments", "outputReference",
        "queriedFields", "sortField", "sortOrder", "storeOutputAutomatically",
    ],
    "recordUpdates": [
        "connector", "faultConnector", "filterLogic", "filters", "inputAssignments",
        "inputReference", "object",
    ],
    "recordCreates": [
        "assignRecordIdToReference", "connector", "faultConnector", "inputAssignments",
        "inputReference", "object", "storeOutputAutomatically",
    ],
}  # fmt: skip
OTHER_ORDERS = {
    "start": [
        "locationX", "locationY", "connector", "doesRequireRecordChangedToMeetCriteria",
        "filterFormula", "filterLogic", "filters", "object", "recordTriggerType", "scheduledPaths",
        "triggerType",
    ],
    "scheduledPaths": [
        "name", "connector", "label", "maxBatchSize", "offsetNumber", "offsetUnit", "pathType",
        "recordField", "timeSource",
    ],
    "variables": [
        "description", "name", "apexClass", "dataType", "isCollection", "isInput", "isOutput",
        "objectType", "scale", "value",
    ],
    "formulas": ["description", "name", "dataType", "expression", "scale"],
    "processMetadataValues": ["name", "value"],
    "rules": ["name", "conditionLogic", "conditions", "connector",
              "doesRequireRecordChangedToMeetCriteria", "label"],
    "conditions": ["leftValueReference", "operator", "rightValue"],
    "filters": ["field", "operator", "value"],
    "assignmentItems": ["assignToReference", "operator", "value"],
    "inputParameters": ["name", "value"],
    "outputParameters": ["assignToReference", "name"],
    "inputAssignments": ["field", "value"],
    "outputAssignments": ["assignToReference", "field"],
}  # fmt: skip
ASYNC_PATH_CHILDREN = {"name", "connector", "pathType"}
# Standard fields the flow may touch, per object (custom fields are looked up in sfdx/).
STANDARD_FIELDS = {
    "Account": {"Id", "Name"},
    "Contact": {"Id", "Email"},
    "Opportunity": {"Id", "AccountId", "StageName", "Name", "LastModifiedDate", "Type"},
    "OpportunityContactRole": {"Id", "ContactId", "IsPrimary", "OpportunityId"},
    "OpportunityLineItem": {"Id", "OpportunityId", "Product2Id", "Quantity"},
    "Product2": {"Id", "Name"},
}
# The DML without a fault connector: each flow's last-resort error writer. Its own failure must
# reach the admin as Flow's unhandled-fault e-mail, not be swallowed (see its description).
NO_FAULT_CONNECTOR = {"Record_Provisioning_Error", "Record_Writeback_Error"}
CALLOUT_ACTION_TYPES = {"externalService", "apex"}
OUTPUT_REFERENCE = re.compile(r"^(?P<element>\w+)\.(?P<rest>.+)$")


def external_actions(flow):
    return [
        n for n in flow.of_kind("actionCalls") if text(n.element, "actionType") == "externalService"
    ]


def test_flow_has_external_service_actions(service_flow):
    assert external_actions(service_flow), "the template calls no StiggActions operation"


def test_action_names_are_operations_of_the_spec(service_flow, spec):
    operations = spec.operations()
    for node in external_actions(service_flow):
        action_name = text(node.element, "actionName")
        registration, _, operation_id = action_name.partition(".")
        assert registration == sfdx.REGISTRATION, f"{node.name}: {action_name}"
        assert operation_id in operations, f"{node.name}: {operation_id} is not in {spec.path.name}"
        assert text(node.element, "nameSegment") == action_name, node.name


def test_action_inputs_are_operation_inputs_and_body_types_match(service_flow, spec):
    operations = spec.operations()
    variables = service_flow.variables()
    for node in external_actions(service_flow):
        operation = operations[text(node.element, "actionName").split(".", 1)[1]]
        names = [text(p, "name") for p in node.element.findall(NS + "inputParameters")]
        unknown = set(names) - operation.inputs
        assert not unknown, f"{node.name}: {unknown} are not inputs of {operation.operation_id}"
        if operation.request_schema:
            assert "body" in names, f"{node.name}: no body input"
            body = next(
                p for p in node.element.findall(NS + "inputParameters") if text(p, "name") == "body"
            )
            variable = variables[text(body.find(NS + "value"), "elementReference")]
            assert text(variable, "apexClass") == sfdx.APEX_TYPE_PREFIX + operation.request_schema


def test_output_references_exist_in_response_schemas(service_flow, spec):
    operations = spec.operations()
    actions = {
        n.name: operations[text(n.element, "actionName").split(".", 1)[1]]
        for n in external_actions(service_flow)
    }
    checked = 0
    for where, reference in service_flow.references():
        match = OUTPUT_REFERENCE.match(reference)
        if not match or match["element"] not in actions:
            continue
        operation = actions[match["element"]]
        code, *fields = match["rest"].split(".")
        checked += 1
        if code == "responseCode" and not fields:
            continue
        assert code in operation.responses, f"{where} {reference}: {code} is not declared"
        assert fields, f"{where} {reference}: read a field of the {code} body"
        assert spec.has_path(operation.responses[code], fields), (
            f"{where} {reference}: not in the {code} schema of {operation.operation_id}"
        )
    assert checked, "no action output is read: the service_flow ignores what StiggActions answers"


def test_apex_defined_variables_name_spec_schemas_and_their_fields(service_flow, spec):
    apex_vars = {}
    for name, variable in service_flow.variables().items():
        apex_class = text(variable, "apexClass")
        if text(variable, "dataType") == "Apex" or apex_class:
            assert text(variable, "dataType") == "Apex", name
            assert apex_class.startswith(sfdx.APEX_TYPE_PREFIX), f"{name}: {apex_class}"
            schema = apex_class.removeprefix(sfdx.APEX_TYPE_PREFIX)
            assert schema in spec.schemas, f"{name}: {schema} is not a schema of {spec.path.name}"
            apex_vars[name] = spec.schemas[schema]
    assert apex_vars, "no Apex-defined request variables"
    for where, reference in service_flow.references():
        head, _, field_path = reference.partition(".")
        if head in apex_vars and field_path:
            assert spec.has_path(apex_vars[head], field_path.split(".")), f"{where}: {reference}"


def _custom_field_exists(obj: str, field: str) -> bool:
    return (sfdx.DEFAULT_DIR / "objects" / obj / "fields" / f"{field}.field-meta.xml").is_file()


def _field_known(obj: str, field: str) -> bool:
    if field.endswith("__c"):
        return _custom_field_exists(obj, field)
    return field in STANDARD_FIELDS.get(obj, set())


def test_object_fields_exist(any_flow):
    flow = any_flow
    used: list[tuple[str, str, str]] = []  # (where, object, field)
    for node in flow.of_kind("recordLookups", "recordUpdates", "recordCreates"):
        obj = text(node.element, "object")
        for tag in ("filters", "inputAssignments", "outputAssignments"):
            used += [(node.name, obj, text(e, "field")) for e in node.element.findall(NS + tag)]
        used += [(node.name, obj, q.text) for q in node.element.findall(NS + "queriedFields")]
        if (
            node.kind == "recordLookups"
            and text(node.element, "storeOutputAutomatically") == "true"
        ):
            assert node.element.findall(NS + "queriedFields"), f"{node.name} stores every field"
    trigger_object = text(flow.start, "object")
    used += [
        ("start", trigger_object, text(f, "field")) for f in flow.start.findall(NS + "filters")
    ]
    sobject_vars = {
        name: text(v, "objectType")
        for name, v in flow.variables().items()
        if text(v, "dataType") == "SObject"
    }
    for where, reference in flow.references():
        head, _, rest = reference.partition(".")
        if head == "$Record" and rest:
            used.append((where, trigger_object, rest.split(".")[0]))
        elif head in sobject_vars and rest:
            used.append((where, sobject_vars[head], rest.split(".")[0]))
    unknown = sorted({(obj, field) for _, obj, field in used if not _field_known(obj, field)})
    assert not unknown, f"fields neither in sfdx/ nor known standard fields: {unknown}"
    # Lookups read the line items' own formula fields: Get Records cannot query Product2.X.
    assert not [f for _, _, f in used if "." in f], "parent-field paths in a Get Records"


def test_element_order_follows_the_reference_table(any_flow):
    flow = any_flow
    errors = sfdx.order_errors(flow.root, TOP_LEVEL_ORDER, "Flow")
    for child in flow.root:
        kind = sfdx.local(child.tag)
        name = text(child, "name") or kind
        if kind in NODE_FIELDS:
            errors += sfdx.order_errors(child, NODE_HEAD + NODE_FIELDS[kind], f"{kind} {name}")
        elif kind in OTHER_ORDERS:
            errors += sfdx.order_errors(child, OTHER_ORDERS[kind], f"{kind} {name}")
        for inner in child.iter():
            inner_kind = sfdx.local(inner.tag)
            if inner is not child and inner_kind in OTHER_ORDERS:
                errors += sfdx.order_errors(inner, OTHER_ORDERS[inner_kind], f"{name}/{inner_kind}")
    assert not errors, "\n".join(errors)


def test_node_elements_have_name_label_and_location(any_flow):
    flow = any_flow
    for node in flow.nodes.values():
        for tag in ("label", "locationX", "locationY"):
            assert text(node.element, tag), f"{node.kind} {node.name}: <{tag}> missing"
        int(text(node.element, "locationX"))
        int(text(node.element, "locationY"))
    int(text(flow.start, "locationX"))
    int(text(flow.start, "locationY"))


def opportunity_update_filters(flow) -> list[tuple[str, str, str]]:
    """Checks the flow is a Draft that runs after an Opportunity is saved by an update
    that changed it into its criteria; returns its entry filters (field, operator, value)."""
    assert text(flow.root, "processType") == "AutoLaunchedFlow"
    assert text(flow.root, "status") == "Draft"
    assert text(flow.start, "object") == "Opportunity"
    assert text(flow.start, "triggerType") == "RecordAfterSave"
    assert text(flow.start, "recordTriggerType") == "Update"
    assert text(flow.start, "doesRequireRecordChangedToMeetCriteria") == "true"
    return [
        (text(f, "field"), text(f, "operator"), text(f.find(NS + "value"), "stringValue"))
        for f in flow.start.findall(NS + "filters")
    ]


def test_trigger_is_closed_won_update_draft(template):
    assert ("StageName", "EqualTo", "Closed Won") in opportunity_update_filters(template)


def test_callouts_run_only_on_the_async_path(record_triggered_template):
    flow = record_triggered_template
    entries = flow.entry_points()
    paths = flow.start.findall(NS + "scheduledPaths")
    assert [text(p, "pathType") for p in paths] == ["AsyncAfterCommit"]
    extra = set(sfdx.child_tags(paths[0])) - ASYNC_PATH_CHILDREN
    assert not extra, f"orgs reject {extra} on a Run Asynchronously path"
    actions = {n.name for n in flow.of_kind("actionCalls")}
    assert not flow.reachable_from(entries["immediate"]) & actions, "callout on the immediate path"
    assert actions <= flow.reachable_from(entries["AsyncAfterCommit"])


def test_every_connector_targets_an_element_and_every_element_is_reachable(any_flow):
    flow = any_flow
    for node in flow.nodes.values():
        for target in flow.targets(node.element):
            assert target in flow.nodes, f"{node.name} -> {target}: no such element"
    entries = set().union(*flow.entry_points().values())
    orphans = set(flow.nodes) - flow.reachable_from(entries)
    assert not orphans, f"unreachable elements: {sorted(orphans)}"


def test_no_dml_before_a_callout(any_flow):
    flow = any_flow
    """'You have uncommitted work pending': no callout may be reachable from any DML."""
    actions = {
        n.name
        for n in flow.of_kind("actionCalls")
        if text(n.element, "actionType") in CALLOUT_ACTION_TYPES
    }
    for node in flow.of_kind(*sfdx.DML_KINDS):
        after = flow.reachable_from(flow.successors(node.name))
        assert not after & actions, f"{node.name} (DML) leads to callouts {sorted(after & actions)}"


def test_actions_and_record_operations_have_fault_connectors(any_flow):
    flow = any_flow
    for node in flow.of_kind("actionCalls", "recordLookups", *sfdx.DML_KINDS):
        if node.name in NO_FAULT_CONNECTOR:
            assert not flow.successors(node.name), f"{node.name} must be a final step"
            assert node.element.find(NS + "faultConnector") is None, node.name
            continue
        assert node.element.find(NS + "faultConnector") is not None, f"{node.name}: no fault path"


def test_each_action_is_followed_by_a_response_code_decision(service_flow):
    for node in external_actions(service_flow):
        (target,) = [text(c, "targetReference") for c in node.element.findall(NS + "connector")]
        decision = service_flow.nodes[target]
        assert decision.kind == "decisions", f"{node.name} -> {target} is not a Decision"
        lefts = {text(c, "leftValueReference") for c in decision.element.iter(NS + "conditions")}
        assert lefts == {f"{node.name}.responseCode"}, f"{target} does not branch on responseCode"
        codes = {
            text(c.find(NS + "rightValue"), "numberValue")
            for c in decision.element.iter(NS + "conditions")
        }
        assert "200" in codes, f"{target}: no 200 rule"
        errors_read = {
            ref.split(".")[1]
            for _, ref in service_flow.references()
            if ref.startswith(f"{node.name}.") and ref.count(".") >= 2
        }
        assert {"4XX", "5XX"} <= errors_read, f"{node.name}: 4XX/5XX bodies are never read"


def _assigned(node) -> dict[str, str]:
    """field -> the variable (or literal) a record update writes into it."""
    found = {}
    for assignment in node.element.findall(NS + "inputAssignments"):
        (value,) = list(assignment.find(NS + "value"))
        found[text(assignment, "field")] = value.text
    return found


def test_the_writes_come_last_customer_then_subscription_and_errors_at_the_end(flow):
    updates = {n.name: n for n in flow.of_kind("recordUpdates")}
    assert set(updates) == {"Update_Account", "Update_Opportunity", "Record_Provisioning_Error"}
    account, opportunity = updates["Update_Account"], updates["Update_Opportunity"]
    assert text(account.element, "object") == "Account"
    assert _assigned(account) == {
        "Stigg_Customer_ID__c": "stiggCustomerId",
        "Stigg_Customer_URL__c": "stiggCustomerUrl",
    }
    assert flow.successors(account.name) - {"Capture_Fault"} == {opportunity.name}
    assert text(opportunity.element, "object") == "Opportunity"
    assert _assigned(opportunity) == {
        "Stigg_Subscription_ID__c": "stiggSubscriptionId",
        "Stigg_Subscription_URL__c": "stiggSubscriptionUrl",
    }
    assert flow.successors(opportunity.name) == {"Capture_Fault"}, "the last success step"
    # The variables hold what createSubscription answered.
    stored = flow.nodes["Store_Subscription_Result"].element
    reads = {
        text(item, "assignToReference"): text(item.find(NS + "value"), "elementReference")
        for item in stored.findall(NS + "assignmentItems")
    }
    assert reads["stiggSubscriptionId"] == "Create_Subscription.200.stiggSubscriptionId"
    assert reads["stiggSubscriptionUrl"] == "Create_Subscription.200.stiggSubscriptionUrl"
    error = updates["Record_Provisioning_Error"]
    assert set(_assigned(error)) == {"Stigg_Provisioning_Error__c"}
    assert not flow.successors(error.name), "error recording is not the last step"


@pytest.mark.parametrize(
    "kind", ["actionCalls", "assignments", "decisions", "formulas", "variables"]
)
def test_elements_of_one_kind_are_contiguous(any_flow, kind):
    tags = [sfdx.local(c.tag) for c in any_flow.root]
    if kind not in tags:
        return
    first, last = tags.index(kind), len(tags) - 1 - tags[::-1].index(kind)
    assert set(tags[first : last + 1]) == {kind}


def test_closed_lost_cancel_starts_on_a_lost_renewal_and_is_a_draft(closed_lost_flow):
    filters = opportunity_update_filters(closed_lost_flow)
    assert text(closed_lost_flow.start, "filterLogic") == "and"
    assert filters == [("StageName", "EqualTo", "Closed Lost"), ("Type", "EqualTo", "Renewal")]


def test_closed_lost_cancel_cancels_the_accounts_subscription_at_period_end(closed_lost_flow):
    flow = closed_lost_flow
    [action] = external_actions(flow)
    assert text(action.element, "actionName") == "StiggActions.cancelSubscription"
    build = flow.nodes["Build_Cancel_Request"].element
    assigned = {}
    for item in build.findall(NS + "assignmentItems"):
        (value,) = list(item.find(NS + "value"))
        assigned[text(item, "assignToReference")] = (sfdx.local(value.tag), value.text)
    assert assigned == {
        "cancelRequest.salesforceAccountId": ("elementReference", "$Record.AccountId"),
        "cancelRequest.stiggCustomerId": ("elementReference", "Get_Account.Stigg_Customer_ID__c"),
        "cancelRequest.cancellationTime": ("stringValue", "END_OF_BILLING_PERIOD"),
        "currentStep": ("stringValue", "cancelSubscription"),
    }
    assert flow.successors("Build_Cancel_Request") == {action.name}
    # The only reads before the callout; no record without an Account is sent.
    before = {n.name for n in flow.of_kind("recordLookups")}
    assert before == {"Get_Account"}
    assert flow.successors("Account_Found") == {"Build_Cancel_Request", "No_Account"}


def test_closed_lost_cancel_records_the_outcome_on_the_opportunity(closed_lost_flow):
    flow = closed_lost_flow
    updates = {n.name: n for n in flow.of_kind("recordUpdates")}
    assert set(updates) == {"Record_Cancellation", "Record_Provisioning_Error"}
    for node in updates.values():
        assert text(node.element, "object") == "Opportunity"
        [record_filter] = node.element.findall(NS + "filters")
        assert text(record_filter.find(NS + "value"), "elementReference") == "$Record.Id"
    assert _assigned(updates["Record_Cancellation"]) == {
        "Stigg_Provisioning_Status__c": "SUCCEEDED",
        "Stigg_Subscription_ID__c": "stiggSubscriptionId",
        "Stigg_Subscription_URL__c": "stiggSubscriptionUrl",
        "Stigg_Provisioning_Error__c": "$GlobalConstant.EmptyString",
    }
    assert _assigned(updates["Record_Provisioning_Error"]) == {
        "Stigg_Provisioning_Status__c": "FAILED",
        "Stigg_Provisioning_Error__c": "provisioningErrorText",
    }
    stored = flow.nodes["Store_Cancel_Result"].element
    reads = {
        text(item, "assignToReference"): text(item.find(NS + "value"), "elementReference")
        for item in stored.findall(NS + "assignmentItems")
    }
    assert reads["stiggSubscriptionId"] == "Cancel_Subscription.200.stiggSubscriptionId"
    assert reads["stiggSubscriptionUrl"] == "Cancel_Subscription.200.stiggSubscriptionUrl"
    assert flow.successors("Store_Cancel_Result") == {"Record_Cancellation"}
    assert flow.successors("Record_Cancellation") == {"Capture_Fault"}
    # Every error path ends in the error record: 4XX, 5XX, another status, a fault, no Account.
    for name in ("Cancel_4XX", "Cancel_5XX", "Unexpected_Response", "Capture_Fault", "No_Account"):
        assert flow.successors(name) == {"Record_Provisioning_Error"}, name
