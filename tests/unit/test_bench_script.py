"""The benchmark is not part of the test suite, but what it sends must stay in step with the
code (it once broke silently when an action's API changed)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from actions import ACTIONS
from sandbox import create_app as create_sandbox

BENCH_RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH_RUN)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("bench_run", None)


def test_every_service_target_is_a_valid_request(bench):
    by_path = {action.path: action for action in ACTIONS}
    service_targets = [t for t in bench.targets() if t.server == "service"]

    assert {t.name for t in service_targets if not t.keyed} == {a.operation_id for a in ACTIONS}
    assert [t.name for t in service_targets if t.keyed] == [bench.KEYED_CUSTOMER]
    for target in service_targets:
        body = json.loads(target.body.replace("@ID@", "001D000000IqhSL"))
        assert by_path[target.path].request_schema().validate(body) == {}, target.name


def test_the_baseline_forwards_a_document_the_sandbox_accepts(bench):
    client = create_sandbox(api_keys=[bench.SANDBOX_KEY]).test_client()
    headers = {"X-API-KEY": bench.SANDBOX_KEY}
    client.post(
        "/graphql",
        json={
            "query": "mutation($input: ProvisionCustomerInput!) "
            "{ provisionCustomer(input: $input) { customer { customerId } } }",
            "variables": {"input": {"customerId": bench.GRANT_CUSTOMER}},
        },
        headers=headers,
    )

    response = client.post(
        "/graphql",
        data=bench.grant_graphql_body(),
        headers=headers,
        content_type="application/json",
    )

    assert response.status_code == 200
    assert "errors" not in response.get_json(), response.get_json()


def test_the_connections_split_is_counted_per_process_busiest_first(bench):
    listing = (
        '0 0 127.0.0.1:8080 127.0.0.1:51000 users:(("gunicorn",pid=11,fd=12))\n'
        '0 0 127.0.0.1:8080 127.0.0.1:51001 users:(("gunicorn",pid=12,fd=13))\n'
        '0 0 127.0.0.1:8080 127.0.0.1:51002 users:(("gunicorn",pid=12,fd=14))\n'
        '0 0 127.0.0.1:8080 127.0.0.1:51003 users:(("gunicorn",pid=13,fd=15))\n'
        '0 0 127.0.0.1:8080 127.0.0.1:51004 users:(("gunicorn",pid=12,fd=16))\n'
    )

    assert bench.split_by_process(listing) == [3, 1, 1]
    assert bench.split_by_process("") == []


def test_the_postgresql_rows_carry_the_database_s_cpu_as_a_median_of_rounds(bench):
    def row(rps, database):
        return {
            "target": "createCreditGrant (PostgreSQL)",
            "connections": 8,
            "upstream_delay_ms": 0,
            **dict.fromkeys(("p50_ms", "p90_ms", "p99_ms", "max_ms"), 1.0),
            "rps": rps,
            "cpu_ms_per_request": 3.0,
            "database_cpu_ms_per_request": database,
            "requests": 100,
            "errors": 0,
            "connections_per_worker": [],
        }

    combined = bench.combine_rounds([row(300, 0.5), row(310, 0.9), row(320, 0.6)])
    assert combined[0]["database_cpu_ms_per_request"] == 0.6
    assert bench._database_cpu(combined[0]) == " (+ PostgreSQL 0.60)"
    assert bench._database_cpu({"database_cpu_ms_per_request": None}) == ""
    assert isinstance(bench.postgres_pids(), list)


def test_ledger_threads_writes_and_finishes_a_row_per_request(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "bench_ledger_threads", BENCH_RUN.with_name("ledger_threads.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    url = f"sqlite:///{tmp_path}/ledger.db"

    row = module.measure(threads=3, seconds=0.3, database_url=url)

    from app.store import Store

    store = Store.from_url(url)
    try:
        outcomes = [entry["outcome"] for entry in store.log.list(limit=10_000)]
    finally:
        store.close()
    assert row["requests"] > 0
    assert 0 < row["commits"] <= row["requests"]
    assert outcomes.count("succeeded") == row["requests"] == len(outcomes)


@pytest.mark.postgres
def test_pg_statements_sends_the_same_transaction_three_ways(postgres_admin):
    from sqlalchemy import text

    from tests.conftest import POSTGRES_URL

    spec = importlib.util.spec_from_file_location(
        "bench_pg_statements", BENCH_RUN.with_name("pg_statements.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    results, rows = module.measure(POSTGRES_URL, transactions=4, rounds=2, warmup=2)

    assert list(results) == ["literal script (the service)", "EXECUTE script", "pipeline, prepared"]
    for per_round in results.values():
        assert len(per_round) == 2
        assert all(client > 0 and server >= 0 and wall > 0 for client, server, wall in per_round)
    # Every way wrote each row and finished the one before it: 2 rounds x 3 ways x 6 rows.
    assert rows == {"rows": 36, "finished": 30}
    with postgres_admin.connect() as connection:
        left = connection.execute(
            text("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'bench_pg_statements%'")
        ).scalar()
    assert left == 0
