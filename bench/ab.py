"""Interleaved A/B: this tree's service against another build's, on `make bench`'s machinery.

    .venv/bin/python bench/ab.py --against REV|DIR [--store sqlite|postgres] [--rounds 3]
                                 [--connections 1,8,32] [--target createCreditGrant]
                                 [--duration 6] [--warmup 1] [--delay 0]

`--against` is a git revision (checked out into a temporary worktree, removed afterwards)
or a directory holding another tree (a worktree with uncommitted changes, say). Both
services run from their own tree under this venv, with this tree's `bench/serve.py` and the
same gunicorn options, against one sandbox, beside one baseline. At each concurrency of
each round the baseline and both services are measured in turn, the order rotating from
round to round, so that the machine's drift (large here: the same request swings by 2 x
between rounds) falls on all three alike. It prints every run, then each service's
ratio to the baseline measured next to it, per round and as medians. With `--delay MS`
(the sandbox answering every call MS late, as `make bench`'s 100 ms rows) the ratio is to
the ideal instead: connections / (upstream calls per request x MS).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402  (bench/run.py: servers, targets, wrk, measure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="a git revision or a directory")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--target", default="createCreditGrant")
    parser.add_argument("--duration", type=float, default=6)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--delay", type=int, default=0, help="upstream latency, ms")
    args = parser.parse_args()
    connections = [int(c) for c in args.connections.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="stigg-ab-"))
    other_tree, worktree = _tree(args.against, workdir)
    wrk = bench_run.Wrk(bench_run.ensure_wrk())
    servers: dict = {}
    schemas: list[str] = []
    try:
        servers["sandbox"] = bench_run.start_sandbox(workdir)
        upstream = {
            "STIGG_API_URL": f"{servers['sandbox'].base_url}/graphql",
            "STIGG_API_KEY": bench_run.SANDBOX_KEY,
        }
        servers["baseline"] = _serve("baseline", "baseline", upstream, workdir, bench_run.REPO)
        for name, tree in (("A", bench_run.REPO), ("B", other_tree)):
            env = {
                **upstream,
                "ACTIONS_API_KEYS": bench_run.CALLER_KEY,
                "STIGG_RATE_LIMITS_ENABLED": "false",
                # The service's own modules from its own tree (ahead of the editable install).
                "PYTHONPATH": str(tree),
                "DATABASE_URL": f"sqlite:///{workdir}/{name}.db",
            }
            if args.store == "postgres":
                schemas.append(f"bench_ab_{name.lower()}_{workdir.name[-8:].lower()}")
                env["DATABASE_URL"] = bench_run._postgres_schema_url(schemas[-1], create=True)
            servers[name] = _serve(name, "service", env, workdir, tree)
        bench = bench_run.Bench(args, wrk, servers, bench_run.Sandbox(servers["sandbox"]))
        by_name = {target.name: target for target in bench_run.targets()}
        if args.target not in by_name or by_name[args.target].server != "service":
            raise SystemExit(f"--target must be one of the service's: {sorted(by_name)}")
        runs = {
            "baseline": by_name["baseline"],
            "A": dataclasses.replace(by_name[args.target], server="A"),
            "B": dataclasses.replace(by_name[args.target], server="B"),
        }
        rows: dict[tuple[str, int], list[dict]] = {}
        order = ["baseline", "A", "B"]
        for round_number in range(args.rounds):
            print(f"round {round_number + 1} of {args.rounds} ({' / '.join(order)})", flush=True)
            for count in connections:
                for name in order:
                    row = bench_run.measure(
                        bench,
                        runs[name],
                        connections=count,
                        delay_ms=args.delay,
                        on_postgres=args.store == "postgres" and name != "baseline",
                    )
                    rows.setdefault((name, count), []).append(row)
            order = order[1:] + order[:1]
    finally:
        for server in reversed(list(servers.values())):
            server.stop()
        for schema in schemas:
            bench_run._drop_postgres_schema(schema)
        if worktree:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(other_tree)],
                cwd=bench_run.REPO,
                check=False,
            )

    print(f"\n{args.target} on {args.store}: A = this tree, B = {args.against}")
    measure = "x the ideal" if args.delay else "x baseline req/s"
    print(f"{measure} per round (median); added p99 ms per round; CPU ms/req (median)")
    for count in connections:
        base = rows[("baseline", count)]
        for name in ("A", "B"):
            own = rows[(name, count)]
            if args.delay:
                calls = int(runs[name].upstream_calls)
                ideal = bench_run.ideal_rate(count, calls, args.delay)
                ratios = [row["rps"] / ideal for row in own]
            else:
                ratios = [row["rps"] / b["rps"] for row, b in zip(own, base, strict=True)]
            p99s = [row["p99_ms"] - b["p99_ms"] for row, b in zip(own, base, strict=True)]
            cpu = statistics.median(row["cpu_ms_per_request"] for row in own)
            base_cpu = statistics.median(row["cpu_ms_per_request"] for row in base)
            database = ""
            if args.store == "postgres":
                server_cpu = statistics.median(row["database_cpu_ms_per_request"] for row in own)
                database = f" (+ PostgreSQL {server_cpu:.2f})"
            print(
                f"c={count:<3} {name}: {' / '.join(f'{r:.2f}' for r in ratios)} "
                f"({statistics.median(ratios):.2f})  p99 "
                f"{' / '.join(f'{p:+.1f}' for p in p99s)}  "
                f"CPU {cpu:.2f}{database} vs {base_cpu:.2f}"
            )
    return 0


def _tree(against: str, workdir: Path) -> tuple[Path, bool]:
    """The other build's tree, and whether it is a worktree made here (to remove after)."""
    if Path(against).is_dir():
        return Path(against).resolve(), False
    tree = workdir / "other-tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), against],
        cwd=bench_run.REPO,
        check=True,
    )
    return tree, True


def _serve(name: str, which: str, env: dict, workdir: Path, tree: Path):
    return bench_run.start(
        name,
        [sys.executable, str(BENCH / "serve.py"), which, "--bind", "127.0.0.1:{port}"],
        env=env,
        workdir=workdir,
        cwd=tree,
    )


if __name__ == "__main__":
    sys.exit(main())
