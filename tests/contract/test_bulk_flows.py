"""The bulk Closed Won template and the result write-back flow against the Apex they use, and the
idempotency keys of both templates (issue 9 item 10: a corrected request gets a new key).

The structural rules every flow follows (element order, fault paths, no DML before a callout)
are in test_flow.py; here: what connects the flows to StiggBulkProvisioning and to the event.
"""

from __future__ import annotations

import re

from schemas.batch import IDEMPOTENCY_KEY_PATTERN
from tests.contract import sfdx
from tests.contract.sfdx import NS, text

ACTION = sfdx.Apex("StiggBulkProvisioning")
INVOCABLE_CLASS = "StiggBulkProvisioning"
KEY_FORMULA = re.compile(
    r"^\{!\$Record\.Id\} & ':(?P<operation>\w+):' & "
    r"SUBSTITUTE\(TEXT\(\{!\$Record\.LastModifiedDate\}\), ' ', 'T'\)$"
)
# What the key formula yields for a record saved at 2025-01-31 12:00:00 GMT: Flow's TEXT() of a
# date-time is "YYYY-MM-DD HH:MM:SSZ"; the space becomes a T.
SAMPLE_ID = "006000000000001AAA"
SAMPLE_TEXT_DATETIME = "2025-01-31 12:00:00Z"


def _apex_actions(flow):
    return [n for n in flow.of_kind("actionCalls") if text(n.element, "actionType") == "apex"]


def _inputs(node) -> dict[str, tuple[str, str]]:
    found = {}
    for parameter in node.element.findall(NS + "inputParameters"):
        value = parameter.find(NS + "value")
        (kind,) = list(value)
        found[text(parameter, "name")] = (sfdx.local(kind.tag), kind.text)
    return found


def _formulas(flow) -> dict[str, str]:
    return {text(f, "name"): text(f, "expression") for f in flow.root.findall(NS + "formulas")}


def _picklist_values(obj: str, field: str) -> list[str]:
    root = sfdx.parse(sfdx.DEFAULT_DIR / "objects" / obj / "fields" / f"{field}.field-meta.xml")
    return [text(v, "fullName") for v in root.iter(NS + "value") if text(v, "fullName")]


# --- the bulk template -------------------------------------------------------------------


def test_bulk_template_calls_the_bulk_action_once_and_no_external_service(bulk_flow):
    actions = bulk_flow.of_kind("actionCalls")
    assert [text(n.element, "actionType") for n in actions] == ["apex"], (
        "one Apex action, no callout"
    )
    (action,) = actions
    assert text(action.element, "actionName") == INVOCABLE_CLASS
    assert text(action.element, "nameSegment") == INVOCABLE_CLASS
    annotation = re.search(r"@InvocableMethod\((.*?)\)\s*public static", ACTION.source, re.S)
    assert annotation, "StiggBulkProvisioning has no @InvocableMethod"
    for attribute in ("label='Provision in Stigg (bulk)'", "category='Stigg'", "callout=true"):
        assert attribute in annotation.group(1), attribute
    loops = {n.name for n in bulk_flow.of_kind("loops")}
    in_loop = set()
    for loop in loops:
        body = {
            text(c, "targetReference")
            for c in bulk_flow.nodes[loop].element.findall(NS + "nextValueConnector")
        }
        in_loop |= bulk_flow.reachable_from(body) - bulk_flow.reachable_from(
            {
                text(c, "targetReference")
                for c in bulk_flow.nodes[loop].element.findall(NS + "noMoreValuesConnector")
            }
        )
    assert action.name not in in_loop, "the action runs once per interview, not per line item"


def test_bulk_action_inputs_are_invocable_variables_with_a_known_operation(bulk_flow):
    (action,) = _apex_actions(bulk_flow)
    inputs = _inputs(action)
    request_fields = set(ACTION.fields("Request"))
    assert set(inputs) <= request_fields, set(inputs) - request_fields
    kind, operation = inputs["operation"]
    assert kind == "stringValue" and operation in ACTION.table("BODY_FIELDS")
    renamed = ACTION.string_map("REQUEST_FIELD_FOR")
    for required in ACTION.table("REQUIRED_FIELDS")[operation]:
        assert renamed.get(required, required) in inputs, f"{required} is not passed"
    assert inputs["recordId"] == ("elementReference", "$Record.Id")
    assert inputs["salesforceOpportunityId"] == ("elementReference", "$Record.Id")
    variables = bulk_flow.variables()
    for name, (kind, reference) in inputs.items():
        if kind == "elementReference" and not reference.startswith("$") and reference in variables:
            collection = text(variables[reference], "isCollection") == "true"
            declared = re.search(rf"public (List<\w+>|\w+) {name};", ACTION.source).group(1)
            assert collection == declared.startswith("List<"), f"{name}: {declared} <- {reference}"


def test_apex_action_outputs_read_by_any_flow_are_result_fields(any_flow):
    result_fields = set(ACTION.fields("Result"))
    actions = {n.name for n in _apex_actions(any_flow)}
    for where, reference in any_flow.references():
        head, _, field = reference.partition(".")
        if head in actions and field:
            assert field in result_fields, f"{where}: {reference} is not an output of the action"
    for node in _apex_actions(any_flow):
        for output in node.element.findall(NS + "outputParameters"):
            assert text(output, "name") in result_fields, f"{node.name}: {text(output, 'name')}"


def test_bulk_template_maps_products_like_the_single_template(flow, bulk_flow):
    def rules(f):
        decision = f.nodes["Line_Item_Stigg_Type"].element
        return {
            text(r.find(NS + "conditions").find(NS + "rightValue"), "stringValue")
            for r in decision.findall(NS + "rules")
        }

    assert rules(bulk_flow) == rules(flow) == set(_picklist_values("Product2", "Stigg_Type__c"))

    def items(node):
        return {
            (
                text(i, "assignToReference"),
                text(i, "operator"),
                text(i.find(NS + "value"), "elementReference"),
            )
            for i in bulk_flow.nodes[node].element.findall(NS + "assignmentItems")
        }

    assert ("addonIds", "Add", "lineItem.Stigg_ID__c") in items("Add_Addon")
    assert ("addonQuantities", "Add", "lineItem.Quantity") in items("Add_Addon")
    assert ("creditCurrencyIds", "Add", "lineItem.Stigg_ID__c") in items("Add_Credit_Entitlement")
    assert ("creditAmounts", "Add", "lineItem.Quantity") in items("Add_Credit_Entitlement")
    assert ("planId", "Assign", "lineItem.Stigg_ID__c") in items("Set_Plan")


def test_bulk_template_writes_nothing_before_the_action(bulk_flow):
    (action,) = _apex_actions(bulk_flow)
    dml = {n.name for n in bulk_flow.of_kind(*sfdx.DML_KINDS)}
    fault_target = text(action.element.find(NS + "faultConnector"), "targetReference")
    assert dml == {fault_target}, "the only write is on the action's own fault path"
    before = set(bulk_flow.nodes) - bulk_flow.reachable_from({action.name}) - {action.name}
    assert not before & dml
    # Not-ready Opportunities and failed reads reach the action with a skip reason instead.
    for node in ("Not_Ready_To_Provision", "Capture_Fault"):
        assert bulk_flow.successors(node) == {action.name}, node
        assigned = {
            text(i, "assignToReference")
            for i in bulk_flow.nodes[node].element.findall(NS + "assignmentItems")
        }
        assert assigned == {"skipReason"}, node
    assert _inputs(action)["skipReason"] == ("elementReference", "skipReason")


def test_record_reads_of_the_bulk_template_fault_into_the_action(bulk_flow):
    for node in bulk_flow.of_kind("recordLookups"):
        assert text(node.element.find(NS + "faultConnector"), "targetReference") == "Capture_Fault"


# --- the write-back flow -----------------------------------------------------------------


def test_writeback_is_triggered_by_the_result_event(writeback_flow):
    assert text(writeback_flow.root, "processType") == "AutoLaunchedFlow"
    assert text(writeback_flow.start, "triggerType") == "PlatformEvent"
    assert text(writeback_flow.start, "object") == sfdx.EVENT
    assert text(writeback_flow.root, "status") == "Active", (
        "results are written as soon as deployed"
    )
    assert not writeback_flow.of_kind("actionCalls"), "no callout"


def _updates(flow, obj):
    return [n for n in flow.of_kind("recordUpdates") if text(n.element, "object") == obj]


def _assigned(node) -> dict[str, tuple[str, str]]:
    found = {}
    for assignment in node.element.findall(NS + "inputAssignments"):
        (value,) = list(assignment.find(NS + "value"))
        found[text(assignment, "field")] = (sfdx.local(value.tag), value.text)
    return found


def test_writeback_writes_the_opportunity_and_account_fields(writeback_flow):
    opportunity = set().union(*(_assigned(n) for n in _updates(writeback_flow, "Opportunity")))
    assert opportunity == {
        "Stigg_Subscription_ID__c", "Stigg_Subscription_URL__c", "Stigg_Provisioning_Status__c",
        "Stigg_Provisioning_Error__c",
    }  # fmt: skip
    for node in _updates(writeback_flow, "Account"):
        assert _assigned(node) == {
            "Stigg_Customer_ID__c": ("elementReference", "$Record.Stigg_Customer_ID__c"),
            "Stigg_Customer_URL__c": ("elementReference", "$Record.Stigg_Customer_URL__c"),
        }, node.name
    assert len(_updates(writeback_flow, "Account")) == 2, (
        "the Opportunity's Account, or an Account result"
    )


def test_writeback_status_values_are_the_picklist_and_the_apex_statuses(writeback_flow):
    picklist = set(_picklist_values("Opportunity", "Stigg_Provisioning_Status__c"))
    client = sfdx.Apex("StiggBatchClient")
    apex_statuses = {client.constant(name) for name in ("SUCCEEDED", "FAILED", "QUEUED")}
    assert picklist == apex_statuses
    written = {
        value
        for node in _updates(writeback_flow, "Opportunity")
        for field, (kind, value) in _assigned(node).items()
        if field == "Stigg_Provisioning_Status__c"
    }
    assert written == picklist
    compared = {
        text(c.find(NS + "rightValue"), "stringValue")
        for c in writeback_flow.root.iter(NS + "conditions")
        if text(c, "leftValueReference") == "$Record.Status__c"
    }
    assert compared == apex_statuses


def test_failed_and_queued_results_never_clear_what_a_success_wrote(writeback_flow):
    kept = {
        "Stigg_Subscription_ID__c",
        "Stigg_Subscription_URL__c",
        "Stigg_Customer_ID__c",
        "Stigg_Customer_URL__c",
    }
    for node in writeback_flow.of_kind("recordUpdates"):
        status = _assigned(node).get("Stigg_Provisioning_Status__c", (None, None))[1]
        if status in {"FAILED", "QUEUED"} or node.name == "Record_Writeback_Error":
            assert not kept & set(_assigned(node)), node.name
    subscription = writeback_flow.nodes["Update_Opportunity_Subscription"]
    rule = next(
        r
        for d in writeback_flow.of_kind("decisions")
        for r in d.element.findall(NS + "rules")
        if text(r.find(NS + "connector"), "targetReference") == subscription.name
    )
    conditions = {
        (text(c, "leftValueReference"), text(c, "operator"))
        for c in rule.findall(NS + "conditions")
    }
    assert ("$Record.Stigg_Subscription_ID__c", "IsNull") in conditions, (
        "only a result with a subscription"
    )


def test_writeback_routes_by_the_record_id_prefix(writeback_flow):
    formulas = _formulas(writeback_flow)
    assert formulas["recordKeyPrefix"] == "LEFT({!$Record.Salesforce_Record_ID__c}, 3)"
    prefixes = {
        text(c.find(NS + "rightValue"), "stringValue")
        for c in writeback_flow.root.iter(NS + "conditions")
        if text(c, "leftValueReference") == "recordKeyPrefix"
    }
    assert prefixes == {"006", "001"}  # Opportunity, Account


# --- idempotency keys (issue 9 item 10) --------------------------------------------------


def _key_inputs(flow):
    """(action node, operation, key formula expression) for every action of the flow."""
    formulas = _formulas(flow)
    for node in flow.of_kind("actionCalls"):
        inputs = _inputs(node)
        if text(node.element, "actionType") == "apex":
            operation = inputs["operation"][1]
            key = inputs["idempotencyKey"]
        else:
            operation = text(node.element, "actionName").split(".", 1)[1]
            key = inputs["Idempotency-Key"]
        assert key[0] == "elementReference" and key[1] in formulas, node.name
        yield node, operation, formulas[key[1]]


def test_keys_change_with_the_record_and_stay_with_a_retry(record_triggered_template):
    keys = list(_key_inputs(record_triggered_template))
    assert keys
    for node, operation, expression in keys:
        match = KEY_FORMULA.match(expression)
        assert match, f"{node.name}: {expression}"
        assert match["operation"] == operation, node.name
        sample = f"{SAMPLE_ID}:{operation}:{SAMPLE_TEXT_DATETIME.replace(' ', 'T')}"
        assert re.match(IDEMPOTENCY_KEY_PATTERN, sample), sample


def test_both_templates_give_a_subscription_the_same_key(flow, bulk_flow):
    """A single call's key replays in a batch: switching templates cannot double a subscription."""
    single = {op: expr for _, op, expr in _key_inputs(flow)}
    bulk = {op: expr for _, op, expr in _key_inputs(bulk_flow)}
    assert bulk["createSubscription"] == single["createSubscription"]


def test_apex_derives_a_key_from_record_operation_and_body_hash():
    derive = ACTION.block("static String deriveKey(")
    assert "Crypto.generateDigest('SHA-256', Blob.valueOf(JSON.serialize(body)))" in derive
    assert "recordId + ':' + operation + ':' + hash" in derive
    add = ACTION.block("void add(Request request, Result result)")
    assert "deriveKey(result.recordId, request.operation, body)" in add
    assert "String.isBlank(result.idempotencyKey)" in add
    sample = f"{SAMPLE_ID}:createSubscription:{'0' * 64}"
    assert len(sample) <= 255 and re.match(IDEMPOTENCY_KEY_PATTERN, sample)


def _variable_value(flow_file, name: str) -> str | None:
    for variable in sfdx.parse(flow_file).findall(NS + "variables"):
        if text(variable, "name") == name:
            value = variable.find(NS + "value")
            return None if value is None else text(value, "stringValue")
    raise AssertionError(f"{flow_file.name} has no variable {name}")


def test_both_templates_send_an_explicit_payment_method_the_spec_accepts():
    # Issue 12: what a subscription is paid by is the admin's visible choice, not a default.
    from actions import ACTIONS
    from app.openapi import build_spec

    schemas = build_spec(ACTIONS, batches=False)["components"]["schemas"]
    allowed = schemas["CreateSubscriptionRequest"]["properties"]["paymentCollectionMethod"]["enum"]
    for flow_file in (sfdx.FLOW_FILE, sfdx.BULK_FLOW_FILE):
        assert _variable_value(flow_file, "paymentCollectionMethod") == "PAYMENT_METHOD_ON_FILE"
        assert "PAYMENT_METHOD_ON_FILE" in allowed
    single = sfdx.parse(sfdx.FLOW_FILE)
    assigned = {
        text(item, "assignToReference"): text(item.find(NS + "value"), "elementReference")
        for item in single.iter(NS + "assignmentItems")
    }
    assert assigned["subscriptionRequest.paymentCollectionMethod"] == "paymentCollectionMethod"
    bulk = sfdx.Flow.load(sfdx.BULK_FLOW_FILE)
    [action] = _apex_actions(bulk)
    assert _inputs(action)["paymentCollectionMethod"] == (
        "elementReference",
        "paymentCollectionMethod",
    )
