"""`python -m sandbox --host 127.0.0.1 --port 8090`: run the local Stigg sandbox."""

from __future__ import annotations

import argparse

from sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--catalog", default=None, help="catalog JSON (default: the seeded one)")
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args(argv)
    serve(args.host, args.port, catalog_path=args.catalog, threads=args.threads)


if __name__ == "__main__":
    main()
