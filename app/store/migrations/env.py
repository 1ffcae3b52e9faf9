"""Alembic environment: runs on the connection that ``app.store.db.migrate`` hands over.

``migrate`` opens the transaction (and, on PostgreSQL, takes the advisory lock) before
Alembic runs, so every revision and the version bump commit together or not at all.
For ``alembic revision`` on a developer machine, a connection is made from DATABASE_URL.
"""

import os

from alembic import context

from app.store.models import Base

config = context.config


def run_on(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    from app.store.db import create_engine_for

    engine = create_engine_for(os.environ.get("DATABASE_URL", "sqlite:///instance/store.db"))
    with engine.begin() as connection:
        run_on(connection)
    engine.dispose()
