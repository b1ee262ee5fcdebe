"""Request ids, one structured log line per request, and /metrics in Prometheus format."""
from __future__ import annotations

import io
import json
import logging
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import g
from prometheus_client.parser import text_string_to_metric_families

from llm.usage import Usage
from runtime.settings import ConfigError, Settings
from server import create_app
from tests.conftest import NEURONPEDIA_EXAMPLE, ROOT, make_settings
from tests.test_api_score import FakeRuntime, FakeSimulator, assert_error
from web import observability

ACCESS = "neuron_interp.access"


def fake_app(**overrides):
    return create_app(make_settings(**overrides), FakeRuntime(FakeSimulator(fail={1}), **overrides))


@pytest.fixture
def client():
    return fake_app().test_client()


@pytest.fixture
def json_lines():
    """Everything the root logger writes, through our JSON formatter, as parsed lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(observability.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.DEBUG)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines.text = stream.getvalue  # type: ignore[attr-defined]
    yield lines
    root.removeHandler(handler)
    root.setLevel(level)


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS]


# -- request ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,kwargs,status",
    [
        ("post", "/score", {"json": NEURONPEDIA_EXAMPLE}, 200),
        ("get", "/health", {}, 200),
        ("get", "/nope", {}, 404),
        ("get", "/score", {}, 405),
        ("post", "/score", {"data": b"{", "content_type": "application/json"}, 400),
        ("post", "/score", {"data": b"{}", "content_type": "text/plain"}, 415),
    ],
)
def test_every_response_has_a_request_id(client, method, path, kwargs, status):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert len(response.headers["X-Request-ID"]) == 32


def test_request_ids_are_unique(client):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("offered", ["abc-123", "7f9c2ba4-e88f-4d1a-9a3e-0b5f1c2d3e4f", "req.1:2_3", "x" * 128])
def test_a_sane_incoming_request_id_is_kept(client, offered):
    assert client.get("/health", headers={"X-Request-ID": offered}).headers["X-Request-ID"] == offered


@pytest.mark.parametrize("offered", ["", "x" * 129, "a b", "<script>", "a\"b", "id;rm", "é", "a/b"])
def test_an_unsafe_incoming_request_id_is_replaced(client, offered):
    returned = client.get("/health", headers={"X-Request-ID": offered}).headers["X-Request-ID"]
    assert returned != offered and len(returned) == 32


def test_log_lines_written_during_a_request_carry_its_id(json_lines):
    app = fake_app()

    @app.get("/_chatty")
    def chatty():
        logging.getLogger("neuron_interp.somewhere").warning("inside the view")
        return {}

    app.test_client().get("/_chatty", headers={"X-Request-ID": "trace-42"})
    lines = json_lines()
    inside = next(line for line in lines if line["message"] == "inside the view")
    assert inside["request_id"] == "trace-42"
    assert all(line.get("request_id") == "trace-42" for line in lines if line["logger"] == ACCESS)


# -- the access log ------------------------------------------------------------------


def test_one_access_line_per_request_with_the_documented_fields(client, caplog):
    caplog.set_level(logging.INFO)
    response = client.post("/score", json=NEURONPEDIA_EXAMPLE, environ_base={"REMOTE_ADDR": "192.0.2.9"})
    assert response.status_code == 200
    (record,) = access_records(caplog)
    fields = record.fields
    assert fields["request_id"] == response.headers["X-Request-ID"]
    assert (fields["method"], fields["route"], fields["status"]) == ("POST", "/score", 200)
    assert isinstance(fields["latency_ms"], float) and fields["latency_ms"] >= 0
    assert fields["client"] == "192.0.2.9"
    # What the view reported: the simulator and its LLM usage (FakeSimulator: one call per text).
    assert fields["simulator"] == "fake" and fields["model"] == "fake-model"
    assert fields["llm_calls"] == 2 and fields["prompt_tokens"] == 10
    assert fields["failures"] == 1


def test_the_route_is_the_url_rule_never_the_raw_path(client, caplog):
    caplog.set_level(logging.INFO)
    client.get("/no/such/thing?token=abc")
    client.get("/health?verbose=1")
    routes = [r.fields["route"] for r in access_records(caplog)]
    assert routes == ["<unmatched>", "/health"]
    assert "token=abc" not in caplog.text and "/no/such" not in caplog.text


def test_the_json_line_has_neither_body_nor_headers(json_lines):
    client = fake_app().test_client()
    payload = {**NEURONPEDIA_EXAMPLE, "explanation": "BODY-MARKER explanation"}
    client.post("/score", json=payload, headers={"X-Custom": "HEADER-MARKER", "Cookie": "c=COOKIE-MARKER"})
    client.post("/score", data=b'{"explanation": "BODY-MARKER"', content_type="application/json")
    text = json_lines.text()
    for marker in ("BODY-MARKER", "HEADER-MARKER", "COOKIE-MARKER", "leopard"):
        assert marker not in text
    access = [line for line in json_lines() if line["logger"] == ACCESS]
    assert [line["status"] for line in access] == [200, 400]
    assert {"ts", "level", "message", "request_id", "method", "route", "status", "latency_ms", "client"} <= set(access[0])


def test_logging_never_breaks_an_answer(capsys):
    app = fake_app()

    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    @app.get("/_odd")
    def odd():
        g.log_fields.update(thing=Unprintable(), usage={"llm_calls": "many"}, failures=float("nan"))
        return {"ok": True}

    response = app.test_client().get("/_odd")
    assert response.status_code == 200 and response.get_json() == {"ok": True}
    assert response.headers["X-Request-ID"]
    assert "Logging error" not in capsys.readouterr().err


def test_record_usage_adds_up_within_a_request(caplog):
    caplog.set_level(logging.INFO)
    app = fake_app()

    @app.get("/_usage")
    def usage():
        observability.record_usage(Usage(llm_calls=2, prompt_tokens=100, completion_tokens=5), 1, simulator="json")
        observability.record_usage({"llm_calls": 1, "prompt_tokens": 50, "cache_hits": 3}, [7, 8], simulator="json")
        return {}

    client = app.test_client()
    client.get("/_usage")
    (record,) = access_records(caplog)
    assert record.fields["llm_calls"] == 3 and record.fields["prompt_tokens"] == 150
    assert record.fields["total_tokens"] == 155 and record.fields["failures"] == 3
    metrics = scrape(client)
    assert metrics[("neuron_interp_llm_calls_total", (("simulator", "json"),))] == 3
    assert metrics[("neuron_interp_llm_cache_hits_total", (("simulator", "json"),))] == 3
    assert metrics[("neuron_interp_text_failures_total", (("simulator", "json"),))] == 3


def test_record_usage_outside_a_request_counts_at_once():
    app = fake_app()
    with app.app_context():
        observability.record_usage({"llm_calls": 4, "completion_tokens": 9}, simulator="batched")
    observability.record_usage({"llm_calls": 4})  # no app: ignored, not an error
    metrics = scrape(app.test_client())
    assert metrics[("neuron_interp_llm_calls_total", (("simulator", "batched"),))] == 4
    assert metrics[("neuron_interp_llm_completion_tokens_total", (("simulator", "batched"),))] == 9


# -- log formats ---------------------------------------------------------------------


def our_root_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_neuron_interp", False)]


def test_log_format_selects_the_root_formatter():
    create_app(make_settings(log_format="text"))
    (handler,) = our_root_handlers()
    assert isinstance(handler.formatter, observability.TextFormatter)
    create_app(make_settings(log_format="json"))
    (handler,) = our_root_handlers()  # still one handler, however many apps
    assert isinstance(handler.formatter, observability.JsonFormatter)


def test_an_unknown_log_format_is_a_config_error():
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        create_app(make_settings(log_format="xml"))


def test_new_settings_come_from_the_environment():
    s = Settings.from_env({"LOG_FORMAT": "text", "METRICS_REQUIRE_KEY": "1"}, dotenv_path=None)
    assert s.log_format == "text" and s.metrics_require_key is True
    assert Settings.from_env({}, dotenv_path=None).log_format == "json"


def test_the_text_format_is_one_readable_line():
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "GET /health 200", None, None)
    record.fields = {"route": "/health", "status": 200}
    line = observability.TextFormatter().format(record)
    assert line.endswith('GET /health 200 route="/health" status=200')
    assert "[-]" in line


def test_the_json_format_survives_odd_values():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "odd %s", ("values",), None)
    record.fields = {"nan": float("nan"), "inf": float("inf"), "obj": object(), "nested": {"t": (1, 2)}}
    line = json.loads(observability.JsonFormatter().format(record))
    assert line["message"] == "odd values" and line["nan"] is None and line["inf"] is None
    assert line["nested"] == {"t": [1, 2]}


def test_tracebacks_are_in_the_json_line(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = [line for line in json_lines() if line["message"] == "failed"]
    assert "ValueError: boom" in line["exc"]


# -- /metrics ------------------------------------------------------------------------


def scrape(client, **kwargs) -> dict:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_requests_by_route_and_status(client):
    client.post("/score", json=NEURONPEDIA_EXAMPLE)
    client.post("/score", json=NEURONPEDIA_EXAMPLE)
    client.post("/score", data=b"{", content_type="application/json")
    client.get("/nope")
    metrics = scrape(client)

    def requests(method, route, status):
        key = ("neuron_interp_http_requests_total", (("method", method), ("route", route), ("status", status)))
        return metrics.get(key, 0)

    assert requests("POST", "/score", "200") == 2
    assert requests("POST", "/score", "400") == 1
    assert requests("GET", "<unmatched>", "404") == 1
    assert metrics[("neuron_interp_http_request_duration_seconds_count", (("route", "/score"),))] == 3
    inf_bucket = ("neuron_interp_http_request_duration_seconds_bucket", (("le", "+Inf"), ("route", "/score")))
    assert metrics[inf_bucket] == 3


def test_metrics_count_llm_work_from_the_views(client):
    client.post("/score", json=NEURONPEDIA_EXAMPLE)
    client.post("/score", json=NEURONPEDIA_EXAMPLE)
    metrics = scrape(client)
    fake = (("simulator", "fake"),)
    assert metrics[("neuron_interp_llm_calls_total", fake)] == 4
    assert metrics[("neuron_interp_llm_prompt_tokens_total", fake)] == 20
    assert metrics[("neuron_interp_text_failures_total", fake)] == 2


def test_each_app_counts_on_its_own():
    first, second = fake_app().test_client(), fake_app().test_client()
    first.get("/health")
    key = ("neuron_interp_http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))
    assert scrape(first)[key] == 1
    assert key not in scrape(second)


def test_label_values_stay_bounded(client):
    client.open("/health", method="BREW")
    metrics = scrape(client)
    assert not any(dict(labels).get("method") == "BREW" for _, labels in metrics)
    m = observability.Metrics()
    m.record_usage({"llm_calls": 1}, simulator="a model name with spaces / and slashes")
    assert m.llm_calls.labels(simulator="other")._value.get() == 1


def test_metrics_are_open_by_default_even_with_a_server_key():
    client = fake_app(server_key="s3cret").test_client()
    assert client.get("/metrics").status_code == 200


def test_metrics_can_require_the_key():
    client = fake_app(server_key="s3cret-metrics", metrics_require_key=True).test_client()
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert_error(client.get("/metrics", headers={"X-Secret-Key": "wrong"}), 401, "unauthorized")
    assert scrape(client, headers={"X-Secret-Key": "s3cret-metrics"})
    assert scrape(client, headers={"Authorization": "Bearer s3cret-metrics"})
    assert "s3cret-metrics" not in client.get("/metrics").get_data(as_text=True)


def test_metrics_speak_openmetrics_when_asked(client):
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


# -- several processes -----------------------------------------------------------------

_CHILD = """
import sys
from tests.conftest import make_settings
from server import create_app
client = create_app(make_settings(log_format="text")).test_client()
if sys.argv[1] == "serve":
    assert client.get("/health").status_code == 200
else:
    sys.stdout.write(client.get("/metrics").get_data(as_text=True))
"""


def test_multiprocess_mode_sums_over_processes(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "LOG_LEVEL": "WARNING"}
    code = _CHILD.format(root=str(ROOT))

    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, mode], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    run("serve")
    run("serve")
    text = run("scrape")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = ("neuron_interp_http_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200")))
    assert samples[key] == 2
    assert len(list(tmp_path.glob("*.db"))) >= 3  # one file per process and metric type


def test_gunicorn_hooks_empty_the_directory_and_mark_dead_workers(tmp_path, monkeypatch):
    conf = runpy.run_path(str(Path(ROOT) / "gunicorn.conf.py"))
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "gauge_livesum_456.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    log = SimpleNamespace(info=lambda *a, **k: None)
    conf["child_exit"](SimpleNamespace(log=log), SimpleNamespace(pid=456))
    assert not (tmp_path / "gauge_livesum_456.db").exists()
    conf["on_starting"](SimpleNamespace(log=log))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    conf["on_starting"](SimpleNamespace(log=log))  # without the variable: nothing to do
    conf["child_exit"](SimpleNamespace(log=log), SimpleNamespace(pid=1))
