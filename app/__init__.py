"""The service: `gunicorn 'app:create_app()'`.

Importing the package loads nothing else (the batch worker and the command line import
only what they use); the Flask app is built in app/web.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: Mapping[str, str] | None = None) -> Flask:
    from app.web import create_app as create_web_app

    return create_web_app(test_config)
