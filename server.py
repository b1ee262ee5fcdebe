"""The entry point: `create_app()` for tests and `server:app` for gunicorn.

The app is the HTTP package (`web/`) around one composition root (`runtime.Runtime`):
middleware first, then one blueprint per concern, then the error table.
"""
from __future__ import annotations

import os

from flask import Flask

from runtime import Runtime, Settings
from web import body_timeout, errors, limits, observability, proxy
from web.bodies import StrictJSONProvider, start_clock
from web.routes import explaining, operations, scoring, viewer


def create_app(config: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = config or Settings.from_env()
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    # One byte more than the limit: werkzeug then lets a chunked body of exactly the limit
    # through and web.bodies tells "one byte over" from "exactly at" (413 for the former only).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length + 1
    app.extensions["settings"] = settings
    app.extensions["runtime"] = runtime = runtime or Runtime(settings)
    body_timeout.init_app(app, settings)
    proxy.init_app(app, settings)
    observability.init_app(app, settings)  # the JSON (or text) log handler, once
    runtime.cache_events.subscribe(app.extensions["metrics"].cache_error)
    limits.init_app(app, settings)
    app.before_request(start_clock)
    for blueprint in (scoring.bp, explaining.bp, operations.bp, viewer.bp):
        app.register_blueprint(blueprint)
    errors.init_app(app, settings.max_content_length)
    return app


def __getattr__(name: str):
    # Module-level lazy attribute (PEP 562): importing `server` in tests does not
    # read the environment; gunicorn's `server:app` builds the app once.
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)


if __name__ == "__main__":
    create_app().run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "5000")))
