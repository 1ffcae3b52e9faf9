"""The floor: receive one request, make one upstream call, answer.

A minimal Flask app whose one route forwards the request body to the Stigg sandbox as one
GraphQL POST and returns the answer. It runs under the same gunicorn options as the
service (`bench/serve.py` takes them from `app.serving.gunicorn_options`), and, like the
service's Stigg client, keeps one `requests.Session` (one keep-alive connection) per
thread. Nothing else: no auth, no validation, no logging.
"""

from __future__ import annotations

import os
import threading

import requests
from flask import Flask, Response, request


def create_app() -> Flask:
    upstream_url = os.environ["STIGG_API_URL"]
    headers = {
        "X-API-KEY": os.environ.get("STIGG_API_KEY", "sandbox"),
        "Content-Type": "application/json",
    }
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    app = Flask("baseline")

    @app.post("/forward")
    def forward() -> Response:
        answer = session().post(upstream_url, data=request.get_data(), headers=headers, timeout=10)
        return Response(answer.content, answer.status_code, mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    return app
