"""A local stand-in for Stigg's GraphQL API: seeded catalog, faithful errors, faults."""

from sandbox.catalog import describe_catalog
from sandbox.server import ConnectionDropped, create_app, serve

__all__ = ["ConnectionDropped", "create_app", "describe_catalog", "serve"]
