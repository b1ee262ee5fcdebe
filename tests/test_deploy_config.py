"""gunicorn.conf.py's deployment rules: lifted limits only behind a proxy, a warning when exposed without one."""
from __future__ import annotations

import runpy

import pytest

from tests.conftest import ROOT


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message, *args) -> None:
        self.warnings.append(message % args)


class _Server:
    def __init__(self) -> None:
        self.log = _Log()


def _load(monkeypatch, **env) -> dict:
    monkeypatch.setenv("WEB_CONCURRENCY", "1")  # no multiprocess metrics folder from loading it
    for name in ("BIND", "TRUSTED_PROXY_HOPS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT.parent)  # away from any .env of the checkout
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize(
    "bind,hops,warned",
    [("0.0.0.0:5000", "0", True), ("[::]:5000", "0", True), ("0.0.0.0:5000", "1", False),
     ("127.0.0.1:5000", "0", False), ("unix:/tmp/x.sock", "0", False)],
)
def test_a_public_bind_without_a_proxy_is_not_silent(monkeypatch, bind, hops, warned):
    conf = _load(monkeypatch, BIND=bind, TRUSTED_PROXY_HOPS=hops)
    server = _Server()
    conf["when_ready"](server)
    assert bool(server.log.warnings) is warned
    if warned:
        assert "no reverse proxy" in server.log.warnings[0] and "nginx" in server.log.warnings[0]


def test_gunicorn_limits_are_lifted_only_behind_a_proxy(monkeypatch):
    alone = _load(monkeypatch, BIND="127.0.0.1:5000")
    assert "limit_request_line" not in alone  # gunicorn's defaults: 4094 bytes, 100 fields
    behind = _load(monkeypatch, BIND="127.0.0.1:5000", TRUSTED_PROXY_HOPS="1")
    assert behind["limit_request_line"] == 0 and behind["limit_request_fields"] == 32768
