"""Run the service or the baseline under exactly the gunicorn options the service ships with.

    python bench/serve.py service|baseline --bind 127.0.0.1:PORT [--workers N] [--threads N]

Both go through `app.serving.ServiceApplication(gunicorn_options(...))`, so a change to the
worker class, worker or thread counts in `app/serving.py` is what both are measured with.

With BENCH_BOOT_LOG set, each worker appends one JSON line to that file when it is ready to
serve: its pid and the seconds from fork to "application loaded" (gunicorn's post_fork and
post_worker_init hooks), which is the start-up time of one worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `import baseline`


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["service", "baseline"])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from app.serving import ServiceApplication, gunicorn_options

    options = gunicorn_options(bind=args.bind, workers=args.workers, threads=args.threads)
    factory = None
    if args.which == "baseline":
        import baseline

        factory = baseline.create_app
        # The start-up check is the service's: the baseline has none of its settings.
        del options["on_starting"]
    boot_log = os.environ.get("BENCH_BOOT_LOG")
    if boot_log:
        options.update(_boot_hooks(boot_log, then=options.get("post_worker_init")))
    ServiceApplication(options, app_factory=factory).run()


def _boot_hooks(path: str, then=None) -> dict:
    forked_at = {}

    def post_fork(server, worker):
        forked_at[os.getpid()] = time.perf_counter()

    def post_worker_init(worker):
        if then is not None:
            then(worker)  # the service's own hook: part of starting a worker
        seconds = time.perf_counter() - forked_at.get(os.getpid(), time.perf_counter())
        with open(path, "a") as log:
            log.write(json.dumps({"pid": os.getpid(), "boot_s": seconds}) + "\n")

    return {"post_fork": post_fork, "post_worker_init": post_worker_init}


if __name__ == "__main__":
    main()
