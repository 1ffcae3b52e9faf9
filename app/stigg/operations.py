"""The GraphQL operations the service sends to Stigg, parsed once, with their retry rule.

The documents live as `.graphql` files beside this module and select only the fields the
actions read. Each operation says whether resending it can double a side effect.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from pathlib import Path

from graphql import DocumentNode, OperationDefinitionNode, parse, print_ast

DOCUMENTS_DIR = Path(__file__).parent / "documents"


class Resend(enum.Enum):
    # Reads and upserts: sending twice leaves Stigg as sending once would.
    ALWAYS = "always"
    # Creates that bill or grant: resend only when Stigg certainly did not execute the first
    # attempt (refused the connection, rate-limited it, or rejected it as busy).
    ONLY_IF_NOT_EXECUTED = "only-if-not-executed"


# provisionCustomer is create-only: a repeat that lands after a lost answer fails with
# DuplicatedEntityNotAllowed, which the customer upsert turns into an update.
# updateOneSubscription sets absolute values (the full add-on list, the new period, ...), so a
# repeat leaves the subscription as the first attempt did. cancelSubscription too: a repeat
# sets the same end, or finds it ended (SubscriptionAlreadyCanceledOrExpired), which the
# cancel action answers as alreadyCancelled. triggerWorkflow runs the workflow again on every
# call and Stigg offers no way to look a run up: never resent once it may have run.
RESEND_RULES = {
    "GetCustomer": Resend.ALWAYS,
    "ProvisionCustomer": Resend.ALWAYS,
    "UpdateCustomer": Resend.ALWAYS,
    "CreditGrants": Resend.ALWAYS,
    "CustomerSubscriptions": Resend.ALWAYS,
    "ProvisionSubscription": Resend.ONLY_IF_NOT_EXECUTED,
    "GrantCredits": Resend.ONLY_IF_NOT_EXECUTED,
    "UpdateSubscription": Resend.ALWAYS,
    "CancelSubscription": Resend.ALWAYS,
    "TriggerWorkflow": Resend.ONLY_IF_NOT_EXECUTED,
}

# Calls whose answer, once lost after sending, nothing can make up for: not resent, and no
# look-up finds what they did (the creations have one, actions/once.py).
LOST_ANSWER_IS_FINAL = frozenset({"TriggerWorkflow"})


@dataclass(frozen=True)
class Operation:
    name: str
    document: DocumentNode
    # The document as sent: printed once here, not by gql on every call (bench/).
    query: str
    # The root field, e.g. provisionSubscriptionV2: what Stigg's rate limits are keyed by.
    field_name: str
    # Where its result is in the answer: the root field's alias if it has one.
    result_key: str
    resend: Resend
    is_mutation: bool
    # In LOST_ANSWER_IS_FINAL: sent on a connection that cannot have gone stale (client.py).
    lost_answer_is_final: bool = False


@functools.cache
def load_operations() -> dict[str, Operation]:
    operations = {}
    for name, resend in RESEND_RULES.items():
        document = parse((DOCUMENTS_DIR / f"{name}.graphql").read_text())
        definition = document.definitions[0]
        assert isinstance(definition, OperationDefinitionNode)
        assert definition.name and definition.name.value == name, f"{name}.graphql names itself"
        selection = definition.selection_set.selections[0]
        field_name = selection.name.value
        result_key = (selection.alias or selection.name).value
        is_mutation = definition.operation.value == "mutation"
        operations[name] = Operation(
            name,
            document,
            print_ast(document),
            field_name,
            result_key,
            resend,
            is_mutation,
            lost_answer_is_final=name in LOST_ANSWER_IS_FINAL,
        )
    return operations
