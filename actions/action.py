"""What one Flow action is: everything the routes, the OpenAPI document and the sfdx/
registration are generated from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from marshmallow import Schema

if TYPE_CHECKING:
    from app.errors import ActionError


def customer_of(request: dict) -> str | None:
    """The Stigg customer ID of a loaded request: given, or defaulted to the Account ID."""
    return request.get("stiggCustomerId") or request.get("salesforceAccountId")


@dataclass(frozen=True)
class Action:
    operation_id: str
    path: str
    summary: str
    description: str
    request_schema: type[Schema]
    response_schema: type[Schema]
    # run(*, request: dict, stigg: StiggSession, tag: CreationTag) -> dict; `tag` marks
    # what the action creates in Stigg (actions/once.py)
    handler: Callable[..., dict]
    # A realistic request body (against the local sandbox's catalog), for the README, the
    # curl lines `make run` prints and the docs.
    example: dict
    # The Stigg mutations (root fields) one request makes at most, each once: what a queue
    # of these costs against Stigg's rate limits (the batch API's retryAfterSeconds).
    stigg_mutations: tuple[str, ...] = ()
    # The Stigg customer a loaded request touches, or None: a batch runs the items of one
    # customer one at a time, in submission order.
    entity: Callable[[dict], str | None] = customer_of
    # For an action Stigg gives no way to look up (a workflow run): the answer to a request
    # whose earlier attempt died without recording an outcome, instead of running again.
    # None: the action runs again, its look-ups finding what the dead attempt created.
    interrupted: Callable[[], ActionError] | None = None
