"""Stigg's GraphQL API: client, operations, error translation."""

from app.stigg.client import StiggClient, StiggSession
from app.stigg.errors import StiggFailure, is_code

__all__ = ["StiggClient", "StiggFailure", "StiggSession", "is_code"]
