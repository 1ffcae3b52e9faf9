"""Stigg's business errors, as the sandbox raises them from resolvers.

Stigg reports a rejected operation as a GraphQL error whose `extensions` carry the
`ErrorCode` value (`code`), whether the caller's input was at fault (`isValidationError`)
and entity fields named after Stigg's error types (`refId`, `entityName`, `identifier`,
`nonCompatibleAddons`, `planDisplayName`). graphql-core copies an exception's
`extensions` attribute into the formatted error, so raising a StiggError is all a
resolver has to do.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.error_codes import STIGG_ERROR_CODES

# Stigg's rule for customer IDs (its REST docs): a letter or digit, then letters, digits
# and _ | . @ -, at most 255 characters.
CUSTOMER_ID_PATTERN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_|.@-]*")
CUSTOMER_ID_MAX_LENGTH = 255


class StiggError(Exception):
    def __init__(
        self, code: str, message: str, *, is_validation_error: bool = True, **entity_fields: Any
    ) -> None:
        if code not in STIGG_ERROR_CODES:
            raise ValueError(f"{code!r} is not one of Stigg's ErrorCode values")
        super().__init__(message)
        self.code = code
        self.extensions: dict[str, Any] = {
            "code": code,
            "isValidationError": is_validation_error,
            **entity_fields,
        }


def customer_not_found(customer_id: str) -> StiggError:
    # "Customer not found" is the text seen in the wild (Airbyte, Stigg webhooks).
    return StiggError("CustomerNotFound", "Customer not found", refId=customer_id)


def subscription_not_found(subscription_id: str) -> StiggError:
    # No SubscriptionNotFoundError type in the schema; refId mirrors the other *NotFound.
    return StiggError("SubscriptionNotFound", "Subscription not found", refId=subscription_id)


def subscription_ended(subscription_id: str, status: str) -> StiggError:
    # SubscriptionAlreadyCanceledOrExpired's entity fields in the schema: refId, status.
    return StiggError(
        "SubscriptionAlreadyCanceledOrExpired",
        "Subscription is already canceled or expired",
        refId=subscription_id,
        status=status,
    )


def check_customer_id(customer_id: str) -> str:
    """Refuse a customer ID that breaks Stigg's documented rule.

    Which error Stigg answers is not documented. The sandbox assumes the input validation
    of Stigg's API (class-validator under NestJS) reports it as BadUserInput with
    isValidationError, naming the field; see docs/stigg-fidelity.md.
    """
    if len(customer_id) > CUSTOMER_ID_MAX_LENGTH or not CUSTOMER_ID_PATTERN.fullmatch(customer_id):
        raise StiggError(
            "BadUserInput",
            "customerId must start with a letter or digit, contain only letters, digits and "
            f"_ | . @ -, and be at most {CUSTOMER_ID_MAX_LENGTH} characters",
        )
    return customer_id


def duplicated_entity(entity_name: str, identifier: str) -> StiggError:
    # "Duplicated entity not allowed" is the text Airbyte matches on.
    return StiggError(
        "DuplicatedEntityNotAllowed",
        "Duplicated entity not allowed",
        entityName=entity_name,
        identifier=identifier,
    )


def custom_currency_not_found(currency_id: str) -> StiggError:
    # No CustomCurrencyNotFoundError type in the schema; refId mirrors the other *NotFound.
    return StiggError(
        "CustomCurrencyNotFound", f"Custom currency not found: {currency_id}", refId=currency_id
    )


def check_single_id(id_value: str | None, ref_id: str | None, entity: str) -> str | None:
    """Stigg's inputs carry an id and its legacy alias `refId`; a caller must pick one.

    Different values are EntityIdDifferentFromRefIdError in Stigg's ErrorCode list. Equal
    values are rejected too (InvalidArgumentError): the reference says "don't send both"
    and a sandbox stricter than Stigg here costs the service nothing.
    """
    if id_value is not None and ref_id is not None:
        if id_value != ref_id:
            raise StiggError(
                "EntityIdDifferentFromRefIdError",
                f"{entity} id and refId differ: send only one of them",
            )
        raise StiggError("InvalidArgumentError", f"Send either the {entity} id or refId, not both")
    return id_value if id_value is not None else ref_id
