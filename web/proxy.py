"""Behind a reverse proxy: believe X-Forwarded-* only from the hops we trust.

`TRUSTED_PROXY_HOPS=n` wraps the WSGI app in werkzeug's ProxyFix, which takes the
n-th value from the right of X-Forwarded-For / -Proto / -Host: each trusted proxy
appends what it saw, so the rightmost n entries are ours and anything further left
was written by the client and may be forged. With the default 0 nothing is
wrapped and every forwarded header is ignored: `request.remote_addr` is the peer
of the socket. Rate limiting and the logs read the address after this.
"""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from runtime.settings import ConfigError, Settings


def init_app(app: Flask, settings: Settings) -> None:
    hops = settings.trusted_proxy_hops
    if hops < 0:  # Settings.from_env already refuses this; Settings(...) in code may not
        raise ConfigError(f"TRUSTED_PROXY_HOPS={hops} must be 0 or more")
    if hops == 0:
        return
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
