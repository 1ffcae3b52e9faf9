"""The service's documents and the sandbox's schema against Stigg's published schema.

Stigg's published client schema (stigg-api-client 6.25.0, loaded at test time by
stigg_published_schema.py) is the authority on names and types: every document the
service sends must validate against it, every variable the service sends must coerce
against it, and the sandbox's schema must be a faithful slice of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    OperationDefinitionNode,
    Undefined,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values

from sandbox.error_codes import STIGG_ERROR_CODES
from sandbox.graphql_api import sandbox_schema
from tests.contract.stigg_published_schema import published_schema
from tests.sandbox.test_service_documents import SAMPLES

DOCUMENTS_DIR = Path(__file__).resolve().parents[2] / "app" / "stigg" / "documents"
DOCUMENTS = sorted(DOCUMENTS_DIR.glob("*.graphql"))

# Input-field defaults Stigg applies. The printed schema drops them; these come from the
# generated models of Stigg's v2 client (stigg-api-client-v2 6.25.0, reference §2.5) for
# the input types the sandbox has. The sandbox must declare exactly these.
STIGG_INPUT_DEFAULTS = {
    "CheckoutOptions.allowPromoCodes": False,
    "CheckoutOptions.allowTaxIdCollection": False,
    "CheckoutOptions.collectBillingAddress": False,
    "CheckoutOptions.collectPhoneNumber": False,
    "CreditGrantBillingInfoInput.isInvoicePaid": False,
    "CreditGrantInput.awaitPaymentConfirmation": True,
    "ProvisionCustomerInput.excludeFromExperiment": False,
    "ProvisionCustomerInput.shouldSyncFree": False,
    "ProvisionCustomerSubscriptionInput.awaitPaymentConfirmation": True,
    "ProvisionCustomerSubscriptionInput.paymentCollectionMethod": "CHARGE",
    "ProvisionCustomerSubscriptionInput.unitQuantity": -1,
    "ProvisionSubscriptionInput.awaitPaymentConfirmation": True,
    "ProvisionSubscriptionInput.paymentCollectionMethod": "CHARGE",
    "ProvisionSubscriptionInput.skipTrial": False,
    "ProvisionSubscriptionInput.unitQuantity": -1,
    "SubscriptionAddonInput.quantity": 1,
    "SubscriptionBillingInfo.isBackdated": False,
    "SubscriptionCancellationInput.awaitSubscriptionCancellation": True,
    "SubscriptionBillingInfo.isInvoicePaid": False,
    "UpdateCustomerInput.shouldWaitSync": False,
    "UpdateSubscriptionInput.awaitPaymentConfirmation": True,
}


def default_of(field) -> object:
    """The default of an argument or input field, coerced; Undefined when there is none.

    graphql-core 3.3 keeps defaults as `default` (coerced on demand), 3.2 as `default_value`.
    """
    if getattr(field, "default", None) is not None:
        from graphql.utilities.coerce_input_value import coerce_default_value

        return coerce_default_value(field)
    return getattr(field, "default_value", Undefined)


@pytest.fixture(scope="module")
def published() -> GraphQLSchema:
    return published_schema()


def test_the_published_schema_is_the_one_the_reference_describes(published):
    assert len(published.type_map) == 1224
    assert published.query_type is not None and published.mutation_type is not None
    assert "customerSubscriptions" in published.query_type.fields
    assert "provisionSubscriptionV2" in published.mutation_type.fields


def test_there_are_service_documents():
    assert len(DOCUMENTS) >= 7


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_service_document_validates_against_the_published_schema(published, path):
    errors = validate(published, parse(path.read_text(encoding="utf-8")))
    assert [error.message for error in errors] == []


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_the_variables_the_service_sends_coerce_against_the_published_types(published, path):
    [operation] = parse(path.read_text(encoding="utf-8")).definitions
    assert isinstance(operation, OperationDefinitionNode)
    assert SAMPLES[path.stem], f"no sample variables for {path.stem}"
    for variables in SAMPLES[path.stem]:
        coerced = get_variable_values(published, operation.variable_definitions, variables)
        assert not isinstance(coerced, list), [error.message for error in coerced]


def test_a_variable_stigg_would_refuse_does_not_coerce(published):
    # The check above can fail: a Salesforce value leaking through is refused.
    [operation] = parse((DOCUMENTS_DIR / "ProvisionSubscription.graphql").read_text()).definitions
    variables = {
        "input": {
            "customerId": "c",
            "planId": "p",
            "paymentCollectionMethod": "PAYMENT_METHOD_ON_FILE",
        }
    }
    errors = get_variable_values(published, operation.variable_definitions, variables)
    assert isinstance(errors, list) and "PAYMENT_METHOD_ON_FILE" in errors[0].message


def _kind(named_type) -> str:
    for kind in (
        GraphQLObjectType,
        GraphQLInputObjectType,
        GraphQLEnumType,
        GraphQLScalarType,
        GraphQLInterfaceType,
        GraphQLUnionType,
    ):
        if isinstance(named_type, kind):
            return kind.__name__
    return type(named_type).__name__


def schema_differences(sandbox: GraphQLSchema, published: GraphQLSchema) -> list[str]:
    """Where the sandbox's schema is not a faithful slice of the published one.

    Output types may carry fewer fields and fields fewer arguments; everything present
    must match exactly (type, nullability, list-ness), and argument defaults must equal
    the published ones. Input types and enums must be complete.
    """
    problems = []
    for name, ours in sandbox.type_map.items():
        if name.startswith("__"):
            continue
        theirs = published.type_map.get(name)
        if theirs is None:
            problems.append(f"{name}: not in the published schema")
            continue
        if _kind(ours) != _kind(theirs):
            problems.append(f"{name}: {_kind(ours)} here, {_kind(theirs)} in Stigg's")
            continue
        if isinstance(ours, GraphQLEnumType):
            if set(ours.values) != set(theirs.values):
                problems.append(
                    f"{name}: values differ: {sorted(set(ours.values) ^ set(theirs.values))}"
                )
        elif isinstance(ours, GraphQLInputObjectType):
            if set(ours.fields) != set(theirs.fields):
                problems.append(
                    f"{name}: input fields differ: {sorted(set(ours.fields) ^ set(theirs.fields))}"
                )
            for field_name in ours.fields.keys() & theirs.fields.keys():
                mine, stiggs = ours.fields[field_name].type, theirs.fields[field_name].type
                if str(mine) != str(stiggs):
                    problems.append(f"{name}.{field_name}: {mine} here, {stiggs} in Stigg's")
        elif isinstance(ours, GraphQLObjectType):
            for field_name, field in ours.fields.items():
                stigg_field = theirs.fields.get(field_name)
                if stigg_field is None:
                    problems.append(f"{name}.{field_name}: not in the published schema")
                    continue
                if str(field.type) != str(stigg_field.type):
                    problems.append(
                        f"{name}.{field_name}: {field.type} here, {stigg_field.type} in Stigg's"
                    )
                for arg_name, arg in field.args.items():
                    stigg_arg = stigg_field.args.get(arg_name)
                    where = f"{name}.{field_name}({arg_name})"
                    if stigg_arg is None:
                        problems.append(f"{where}: not in the published schema")
                        continue
                    if str(arg.type) != str(stigg_arg.type):
                        problems.append(f"{where}: {arg.type} here, {stigg_arg.type} in Stigg's")
                    if default_of(arg) != default_of(stigg_arg):
                        problems.append(
                            f"{where}: default {default_of(arg)!r} here, "
                            f"{default_of(stigg_arg)!r} in Stigg's"
                        )
    return problems


def test_the_sandbox_schema_is_a_faithful_slice_of_the_published_one(published):
    assert schema_differences(sandbox_schema(), published) == []


def test_the_slice_check_catches_a_wrong_type(published):
    from graphql import build_schema

    wrong = build_schema(
        """
        type Query {
          getCustomerByRefId(input: GetCustomerByRefIdInput!): Customer!
          customerSubscriptions(paging: CursorPaging = {first: 20}): CustomerSubscriptionConnection!
        }
        input GetCustomerByRefIdInput { customerId: String }
        input CursorPaging { after: ConnectionCursor before: ConnectionCursor first: Int last: Int }
        scalar ConnectionCursor
        type Customer { customerId: String! nickname: String }
        type CustomerSubscriptionConnection { totalCount: Int! }
        """
    )
    assert schema_differences(wrong, published) == [
        "Query.getCustomerByRefId: Customer! here, Customer in Stigg's",
        "Query.customerSubscriptions(paging): default {'first': 20} here, {'first': 10} in Stigg's",
        "GetCustomerByRefIdInput: input fields differ: ['environmentId']",
        "GetCustomerByRefIdInput.customerId: String here, String! in Stigg's",
        "Customer.nickname: not in the published schema",
    ]


def test_argument_defaults_are_stiggs(published):
    # The ones the sandbox's behaviour hangs on, spelled out.
    query = sandbox_schema().query_type
    look_up = query.fields["customerSubscriptions"].args
    assert default_of(look_up["filter"]) == {}
    assert default_of(look_up["paging"]) == {"first": 10}
    assert default_of(look_up["sorting"]) == [{"direction": "DESC", "field": "createdAt"}]
    customer_subscriptions = sandbox_schema().type_map["Customer"].fields["subscriptions"].args
    assert default_of(customer_subscriptions["filter"]) == {
        "status": {"in": ["ACTIVE", "IN_TRIAL"]}
    }
    stigg_customer = published.type_map["Customer"].fields["subscriptions"].args
    assert default_of(stigg_customer["filter"]) == default_of(customer_subscriptions["filter"])


def test_input_field_defaults_are_the_ones_stigg_applies():
    declared = {
        f"{name}.{field_name}": default_of(field)
        for name, typ in sandbox_schema().type_map.items()
        if isinstance(typ, GraphQLInputObjectType)
        for field_name, field in typ.fields.items()
        if default_of(field) is not Undefined
    }
    assert declared == STIGG_INPUT_DEFAULTS


def test_the_sandbox_error_codes_are_stiggs_error_code_enum(published):
    assert set(published.type_map["ErrorCode"].values) == STIGG_ERROR_CODES
