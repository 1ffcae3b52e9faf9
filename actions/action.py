"""What one Flow action is: everything the routes, the OpenAPI document and the sfdx/
registration are generated from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from marshmallow import Schema


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
