"""gunicorn's settings for `gunicorn 'app:create_app()'` run from the repository root.

gunicorn reads ./gunicorn.conf.py by default. The settings are the service's own
(app/serving.py `gunicorn_options`, which `stigg-flow-actions serve` uses too): the
slow-client-safe gthread worker, its worker and thread counts (WEB_CONCURRENCY,
GUNICORN_THREADS), and the `on_starting` check that refuses a bad configuration in one
line before any worker starts. `--bind` (or $PORT) says where to listen; options given on
the command line override these.
"""

import sys

from app.config import ConfigError

try:
    from app.serving import gunicorn_options

    globals().update(gunicorn_options())
except ConfigError as exc:
    # Raised here, gunicorn would print "Failed to read config file" and a traceback.
    print(f"configuration error: {exc}", file=sys.stderr, flush=True)
    sys.exit(2)
