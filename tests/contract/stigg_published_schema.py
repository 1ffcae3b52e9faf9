"""Stigg's published client schema, loaded at test time from `stigg-api-client` 6.25.0.

Stigg publishes its GraphQL client schema as the sgqlc module `stigg.generated.schema` of
the PyPI package `stigg-api-client`. The package's licence is proprietary, so nothing of it
is copied into this repository: `make install` installs it into the virtualenv (with
--no-deps, see the Makefile) and this module prints its types to SDL when a test asks.

The module is loaded by file path, not imported as `stigg.generated.schema`, because
importing the `stigg` package also loads Stigg's client, which needs requests and an old
tenacity; the schema module needs only sgqlc.

The printed SDL keeps argument defaults (`customerSubscriptions(paging: CursorPaging =
{first: 10})`) but not input-field defaults; those are documented from Stigg's v2 client
models in the reference (§2.5) and checked in test_stigg_schema.py.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util

from graphql import GraphQLSchema, build_schema

DISTRIBUTION = "stigg-api-client"
VERSION = "6.25.0"
SCHEMA_MODULE_PATH = "stigg/generated/schema.py"
# sgqlc declares these itself; GraphQL has them built in, so SDL must not redeclare them.
_BUILT_IN_SCALARS = frozenset({"Int", "Float", "String", "Boolean", "ID"})


class PublishedSchemaMissing(RuntimeError):
    """The package is absent or another version: the contract tests cannot run."""


def _schema_module():
    try:
        installed = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed != VERSION:
        raise PublishedSchemaMissing(
            f"{DISTRIBUTION}=={VERSION} is needed for Stigg's published schema "
            f"(found {installed or 'nothing'}); run `make install`"
        )
    path = importlib.metadata.distribution(DISTRIBUTION).locate_file(SCHEMA_MODULE_PATH)
    spec = importlib.util.spec_from_file_location("_stigg_published_schema", str(path))
    if spec is None or spec.loader is None:
        raise PublishedSchemaMissing(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def published_sdl() -> str:
    """Every type of the published schema, printed by sgqlc, as one SDL document."""
    schema = _schema_module().schema
    return "\n\n".join(
        typ.__to_graphql__() for typ in schema if typ.__name__ not in _BUILT_IN_SCALARS
    )


@functools.cache
def published_schema() -> GraphQLSchema:
    return build_schema(published_sdl())
