"""The floor: a bare Flask app whose POST /wechat answers "success" — gunicorn + Flask and nothing else."""
from __future__ import annotations

from flask import Flask, Response


def create_app() -> Flask:
    app = Flask(__name__)

    # Same URL, method and answer shape as the webhook's "nothing to say" path, so the
    # only difference from the real app is the work the webhook does.
    @app.post("/wechat")
    def wechat() -> Response:
        return Response("success", mimetype="text/plain")

    # Benches beyond the webhook (e.g. heartbeats) post elsewhere; one catch-all keeps the
    # floor identical for them without a route per bench.
    @app.post("/<path:anything>")
    def anything(anything: str) -> Response:
        return Response("success", mimetype="text/plain")

    return app


app = create_app()
