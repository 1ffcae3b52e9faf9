"""What one provisioning-log transaction costs PostgreSQL, sent three ways.

    .venv/bin/python bench/pg_statements.py [--transactions 3000] [--rounds 2]
                                            [--url postgresql://postgres@127.0.0.1/test]

Every request commits BEGIN, the outcome carried from the request before (an UPDATE), its
own row (an INSERT ... RETURNING id) and COMMIT. The service sends them as one simple-query
message with the values as literals (app/store/postgres_script.py: "literal script").
The two other ways keep PostgreSQL from parsing and planning the statements each time:

- "EXECUTE script": the same one message, but `EXECUTE name(values)` of statements the
  connection PREPAREd once (SQL-level prepared statements);
- "pipeline": psycopg's pipeline mode with `prepare=True` (protocol-level prepared
  statements: Bind and Execute messages, one Sync).

The table is the service's own (`provisioning_log`, every index), created in a scratch
schema of its own and dropped afterwards; the statements are SQLAlchemy's compilation of the same
INSERT and UPDATE the service runs. Per transaction it prints this process's CPU
("client"), the server backend's CPU (`/proc/<pid>/stat` of the connection's backend,
which must run on this machine) and the wall time, one connection, no concurrency. The
ways take turns within each round, so the machine's drift falls on all three.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from sqlalchemy import bindparam, insert, update
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from app.store.models import ProvisioningLogEntry
from app.store.provisioning_log import _FINISH_KEYS, _START_KEYS

entries = ProvisioningLogEntry.__table__
INSERT_ROW = insert(entries).returning(entries.c.id)
FINISH_ROW = update(entries).where(entries.c.id == bindparam("entry_id"))


def compiled(statement, columns, paramstyle: str | None = None):
    dialect = psycopg_dialect.dialect(**({"paramstyle": paramstyle} if paramstyle else {}))
    return statement.compile(dialect=dialect, column_keys=list(columns))


def row_values(number: int) -> dict:
    return {
        "request_id": f"bench-{os.getpid()}-{number}",
        "correlation_id": None,
        "operation": "createCreditGrant",
        "caller_key_id": "bench",
        "idempotency_key": None,
        "salesforce_account_id": "001D000000IqhSLIAZ",
        "salesforce_opportunity_id": "006D000000CkYtrIAF",
        "payload": json.dumps(
            {"customerId": "bench-customer", "amount": 100, "currencyId": "credits"}
        ),
        "replay_of": None,
        "batch_item_id": None,
        "outcome": "in_progress",
        "attempts": 0,
        "created_at": datetime.now(UTC),
    }


def finish_values(entry_id: int) -> dict:
    return {
        "entry_id": entry_id,
        "outcome": "succeeded",
        "http_status": 200,
        "error_code": None,
        "stigg_error_code": None,
        "message": None,
        "stigg_customer_id": "bench-customer",
        "stigg_subscription_id": None,
        "stigg_credit_grant_id": "grant-1",
        "attempts": 1,
        "duration_ms": 2,
        "finished_at": datetime.now(UTC),
    }


class Way:
    """One way of sending the transaction: `send(number, previous_id) -> the new row's id`."""

    def __init__(self, connection: psycopg.Connection) -> None:
        self.connection = connection
        self.insert = compiled(INSERT_ROW, _START_KEYS)
        self.finish = compiled(FINISH_ROW, _FINISH_KEYS)
        self.insert_numbered = compiled(INSERT_ROW, _START_KEYS, "numeric_dollar")
        self.finish_numbered = compiled(FINISH_ROW, _FINISH_KEYS, "numeric_dollar")
        self.prepared: set[str] = set()  # the names this connection has PREPAREd

    def literal_script(self, number: int, previous: int | None) -> int:
        cursor = psycopg.ClientCursor(self.connection)
        parts = ["BEGIN"]
        if previous is not None:
            parts.append(cursor.mogrify(self.finish.string, finish_values(previous)))
        parts.append(cursor.mogrify(self.insert.string, row_values(number)))
        parts.append("COMMIT")
        return self._run_script(cursor, parts, previous)

    def execute_script(self, number: int, previous: int | None) -> int:
        cursor = psycopg.ClientCursor(self.connection)
        parts = ["BEGIN"]
        if previous is not None:
            parts.append(
                self._execute(cursor, "bench_finish", self.finish_numbered, finish_values(previous))
            )
        parts.append(
            self._execute(cursor, "bench_insert", self.insert_numbered, row_values(number))
        )
        parts.append("COMMIT")
        return self._run_script(cursor, parts, previous)

    def pipeline(self, number: int, previous: int | None) -> int:
        connection = self.connection
        insert_order = self.insert_numbered.positiontup
        finish_order = self.finish_numbered.positiontup
        with connection.pipeline():
            connection.execute("BEGIN")
            if previous is not None:
                values = finish_values(previous)
                connection.execute(
                    _numbered_as_format(self.finish_numbered.string),
                    [values[name] for name in finish_order],
                    prepare=True,
                )
            values = row_values(number)
            inserted = connection.execute(
                _numbered_as_format(self.insert_numbered.string),
                [values[name] for name in insert_order],
                prepare=True,
            )
            connection.execute("COMMIT")
        return inserted.fetchone()[0]

    def _execute(self, cursor, name: str, statement, values: dict) -> str:
        if name not in self.prepared:
            self.connection.execute(f"PREPARE {name} AS {statement.string}")
            self.prepared.add(name)
        placeholders = ", ".join(["%s"] * len(statement.positiontup))
        return cursor.mogrify(
            f"EXECUTE {name}({placeholders})", [values[n] for n in statement.positiontup]
        )

    @staticmethod
    def _run_script(cursor, parts: list[str], previous: int | None) -> int:
        cursor.execute(";\n".join(parts))
        cursor.nextset()  # BEGIN's
        if previous is not None:
            cursor.nextset()  # the UPDATE's
        entry_id = cursor.fetchone()[0]
        cursor.close()
        return entry_id


def _numbered_as_format(sql: str) -> str:
    """`$1` ... as psycopg's positional `%s` (in order: SQLAlchemy numbers them so)."""
    return re.sub(r"\$\d+", "%s", sql)


def backend_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    url: str, transactions: int, rounds: int, warmup: int = 200
) -> tuple[dict[str, list], dict[str, int]]:
    """{way: [(client us, server us, wall us) per transaction, one per round]}, and the
    rows the ways wrote: {"rows": all of them, "finished": those whose outcome was set}
    (each run of a way leaves its last row in progress)."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    schema = f"bench_pg_statements_{os.getpid()}"
    results: dict[str, list] = {}
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        try:
            connection.execute(f"SET search_path TO {schema}")
            dialect = psycopg_dialect.dialect()
            connection.execute(str(CreateTable(entries).compile(dialect=dialect)))
            for index in entries.indexes:
                connection.execute(str(CreateIndex(index).compile(dialect=dialect)))
            way = Way(connection)
            ways = {
                "literal script (the service)": way.literal_script,
                "EXECUTE script": way.execute_script,
                "pipeline, prepared": way.pipeline,
            }
            pid = connection.info.backend_pid
            number = 0
            for _round in range(rounds):
                for name, send in ways.items():
                    previous = None
                    for _ in range(warmup):
                        number += 1
                        previous = send(number, previous)
                    server, client, wall = (
                        backend_cpu_s(pid),
                        time.process_time(),
                        time.perf_counter(),
                    )
                    for _ in range(transactions):
                        number += 1
                        previous = send(number, previous)
                    results.setdefault(name, []).append(
                        tuple(
                            1e6 * value / transactions
                            for value in (
                                time.process_time() - client,
                                backend_cpu_s(pid) - server,
                                time.perf_counter() - wall,
                            )
                        )
                    )
            rows, finished = connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded') "
                "FROM provisioning_log"
            ).fetchone()
        finally:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")
    return results, {"rows": rows, "finished": finished}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--url",
        default=os.environ.get("STIGG_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
    )
    args = parser.parse_args(argv)
    results, _rows = measure(args.url, args.transactions, args.rounds)
    print(
        f"{args.transactions} transactions x {args.rounds} rounds; us per transaction, "
        "each round: client CPU / server CPU / wall"
    )
    for name, rounds in results.items():
        cells = "   ".join(f"{c:5.0f} / {s:5.0f} / {w:5.0f}" for c, s, w in rounds)
        print(f"  {name:30s} {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
