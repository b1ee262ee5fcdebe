"""What the service tells its operators: request ids, structured logs, Prometheus metrics.

HTTP-layer code (it imports Flask); `init_app(app, settings)` wires it into an app.

- Every response carries `X-Request-ID`: the caller's own when it is sane (at most
  128 characters of `A-Za-z0-9._:-`), else a fresh one. Every log record written
  while a request is served carries the same id.
- One log line per request (logger `neuron_interp.access`): request_id, method,
  route (the URL rule, never the raw path), status, latency_ms, client (after
  ProxyFix), plus whatever the view put in `g.log_fields` (simulator, model, usage,
  failures). Never the body, never a header.
- The root logger writes one JSON object per line (`LOG_FORMAT=json`, the default)
  or readable text (`LOG_FORMAT=text`). SERVER_KEY and OPENAI_API_KEY are replaced
  by `[REDACTED]` in every record of every logger, as a last line of defence.
- `GET /metrics` in Prometheus text format: requests by route and status, latency
  by route, LLM calls, prompt and completion tokens, cache hits, text failures.

Views report LLM usage by updating `g.log_fields` (it exists on every request):

    g.log_fields.update(simulator=..., model=..., usage=usage.to_dict(), failures=len(failures))

or, equivalently and additively, `record_usage(usage, failures, simulator=...)`.
Either way the numbers are logged and counted once, when the response leaves.

Several gunicorn workers: each worker has its own counters, and a scrape reaches
one worker at random. Set `PROMETHEUS_MULTIPROC_DIR` to a directory every worker
can write; the workers then keep their counters in files there and /metrics sums
them over all workers. prometheus_client reads the variable when first imported,
so set it in gunicorn's environment or in .env (gunicorn.conf.py loads .env before
any worker imports the app; this does not hold with preload_app). gunicorn.conf.py
empties the directory when gunicorn starts and tells prometheus_client when a
worker exits. Without the variable each process keeps its own registry, which is
also what tests get.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from prometheus_client import CollectorRegistry, Counter, Histogram, exposition
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from runtime.settings import ConfigError, Settings
from web import auth

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
REDACTED = "[REDACTED]"
LOG_FORMATS = ("json", "text")

access_log = logging.getLogger("neuron_interp.access")
log = logging.getLogger("neuron_interp.observability")

# Latency buckets (seconds): the offline simulator answers in milliseconds, an LLM
# simulator in seconds, and REQUEST_TIMEOUT is up to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LABEL = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_USAGE_KEYS = ("llm_calls", "prompt_tokens", "completion_tokens", "cache_hits")


# -- request ids ----------------------------------------------------------------


def request_id_from(offered: str | None) -> str:
    """The caller's request id when it is safe to echo and log, else a new one."""
    if offered and _SANE_REQUEST_ID.fullmatch(offered) and not _contains_secret(offered):
        return offered
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    if has_request_context():
        return g.get("request_id")
    return None


# -- redaction --------------------------------------------------------------------

# The values to hide, longest first (so a key that contains another is hidden whole).
# Process-wide on purpose: a secret must not reach any log, whichever app or logger
# writes it. Only ever grows.
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def register_secrets(*values: str) -> None:
    global _secrets
    with _secrets_lock:
        merged = set(_secrets) | {v for v in values if v}
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _contains_secret(text: str) -> bool:
    return any(secret in text for secret in _secrets)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


def redact_record(record: logging.LogRecord) -> None:
    """Replace every registered secret in a record's message, traceback and fields."""
    if not _secrets:
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it when it formats
        return
    if _contains_secret(message):
        record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text and _contains_secret(record.exc_text):
        record.exc_text = redact(record.exc_text)
    if record.stack_info and _contains_secret(record.stack_info):
        record.stack_info = redact(record.stack_info)
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        record.fields = _redact_value(fields)


class RedactingFilter(logging.Filter):
    """Hides SERVER_KEY and OPENAI_API_KEY; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


_factory_lock = threading.Lock()


def _install_record_factory() -> None:
    """Every record, from any logger and to any handler, is redacted where it is made.

    A filter on a handler only sees that handler's records (pytest's caplog,
    gunicorn's error log and our own stream each have their own), so the
    redaction also happens where records are made.
    """
    with _factory_lock:
        previous = logging.getLogRecordFactory()
        if getattr(previous, "_neuron_interp", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            # No attributes added here: `extra={...}` may not overwrite a record's
            # attributes, so adding one would break callers that pass it.
            record = previous(*args, **kwargs)
            redact_record(record)
            return record

        factory._neuron_interp = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)


# -- formatters -------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """RFC 8259 JSON only: non-finite floats become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            out["request_id"] = request_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(str(key), value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        # Redacted again as a whole: the request id, for one, is the caller's own text.
        return redact(json.dumps(_redact_value(_jsonable(out)), ensure_ascii=True))


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [request id] message key=value ...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            extra = " ".join(f"{k}={json.dumps(_jsonable(v), default=str)}" for k, v in fields.items())
            head, sep, tail = line.partition("\n")  # keep a traceback below the fields
            line = f"{head} {extra}{sep}{tail}"
        return redact(line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now (pytest and gunicorn swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(settings: Settings) -> logging.Handler:
    """The root logger: one stderr handler with our formatter (idempotent), at LOG_LEVEL."""
    fmt = (settings.log_format or "json").strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={settings.log_format!r} must be one of {', '.join(LOG_FORMATS)}")
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_neuron_interp", False)), None)
    if handler is None:
        handler = _StderrHandler()
        handler._neuron_interp = True  # type: ignore[attr-defined]
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(settings.log_level.upper())
    return handler


# -- metrics ----------------------------------------------------------------------


def _label(value: Any, default: str) -> str:
    """A bounded, safe label value: labels multiply series, so no free text."""
    text = str(value) if value not in (None, "") else default
    return text if _LABEL.fullmatch(text) else "other"


def _as_usage(usage: Any) -> dict:
    if usage is None:
        return {}
    if hasattr(usage, "to_dict"):
        usage = usage.to_dict()
    return dict(usage) if isinstance(usage, Mapping) else {}


def _count(value: Any) -> int:
    """A non-negative count from an int, or the length of a list of failures."""
    if isinstance(value, (list, tuple, set)):
        return len(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return int(value)
    return 0


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class Metrics:
    """The service's Prometheus metrics, in a registry of their own."""

    def __init__(self, *, multiprocess: bool = False) -> None:
        self.multiprocess = multiprocess
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "neuron_interp_http_requests", "HTTP requests answered, by route and status",
            ["method", "route", "status"], registry=r,
        )
        self.latency = Histogram(
            "neuron_interp_http_request_duration_seconds", "Time to answer a request, by route",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.llm_calls = Counter(
            "neuron_interp_llm_calls", "Calls to the LLM backend", ["simulator"], registry=r
        )
        self.prompt_tokens = Counter(
            "neuron_interp_llm_prompt_tokens", "Prompt tokens sent to the LLM backend",
            ["simulator"], registry=r,
        )
        self.completion_tokens = Counter(
            "neuron_interp_llm_completion_tokens", "Completion tokens received from the LLM backend",
            ["simulator"], registry=r,
        )
        self.cache_hits = Counter(
            "neuron_interp_llm_cache_hits", "LLM answers served from the cache", ["simulator"], registry=r
        )
        self.text_failures = Counter(
            "neuron_interp_text_failures", "Texts the simulator could not simulate", ["simulator"], registry=r
        )
        self.cache_errors = Counter(
            "neuron_interp_cache_errors", "Cache operations that failed (served as a miss or skipped)",
            ["backend", "operation"], registry=r,
        )
        if not multiprocess:  # these collectors do not work across processes
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(max(seconds, 0.0))

    def cache_error(self, backend: Any, operation: Any) -> None:
        self.cache_errors.labels(backend=_label(backend, "none"), operation=_label(operation, "none")).inc()

    def record_usage(self, usage: Any, failures: Any = 0, simulator: Any = None) -> None:
        values = _as_usage(usage)
        label = _label(simulator, "none")
        for key, counter in zip(
            _USAGE_KEYS, (self.llm_calls, self.prompt_tokens, self.completion_tokens, self.cache_hits)
        ):
            amount = _count(values.get(key))
            if amount:
                counter.labels(simulator=label).inc(amount)
        amount = _count(failures)
        if amount:
            self.text_failures.labels(simulator=label).inc(amount)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        encoder, content_type = exposition.choose_encoder(accept or "")
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return encoder(registry), content_type
        return encoder(self.registry), content_type


_process_metrics: Metrics | None = None
_process_metrics_lock = threading.Lock()


def _metrics_for_app() -> Metrics:
    """A registry per app, except in multiprocess mode, where the values live in per-process
    files keyed by metric name: there one set of metrics per process."""
    global _process_metrics
    if not multiprocess_dir():
        return Metrics()
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        log.warning(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
            "/metrics shows this process only"
        )
        return Metrics()
    os.makedirs(multiprocess_dir(), exist_ok=True)  # type: ignore[arg-type]
    with _process_metrics_lock:
        if _process_metrics is None:
            _process_metrics = Metrics(multiprocess=True)
        return _process_metrics


def record_usage(usage: Any, failures: Any = 0, *, simulator: str | None = None, model: str | None = None) -> None:
    """Report one piece of LLM work.

    In a request: added to `g.log_fields`, which is logged and counted once when
    the response leaves (so calling this and also updating `g.log_fields` by hand
    with the same numbers would count them twice). Outside a request but inside an
    app context: counted at once. Elsewhere: ignored.
    """
    if has_request_context() and isinstance(g.get("log_fields"), dict):
        fields = g.log_fields
        merged = _as_usage(fields.get("usage"))
        for key, value in _as_usage(usage).items():
            if key in _USAGE_KEYS:
                merged[key] = _count(merged.get(key)) + _count(value)
            elif key == "estimated":
                merged[key] = bool(merged.get(key)) or bool(value)
        if merged:
            merged["total_tokens"] = _count(merged.get("prompt_tokens")) + _count(merged.get("completion_tokens"))
            fields["usage"] = merged
        fields["failures"] = _count(fields.get("failures")) + _count(failures)
        if simulator:
            fields["simulator"] = simulator
        if model:
            fields["model"] = model
        return
    try:
        metrics = current_app.extensions.get("metrics")
    except RuntimeError:  # no app context
        return
    if metrics is not None:
        metrics.record_usage(usage, failures, simulator)


# -- wiring -------------------------------------------------------------------------


def init_app(app: Flask, settings: Settings) -> None:
    register_secrets(settings.server_key, settings.openai_api_key)
    _install_record_factory()
    configure_logging(settings)
    metrics = _metrics_for_app()
    app.extensions["metrics"] = metrics
    require_key = bool(settings.metrics_require_key and settings.server_key)
    if settings.metrics_require_key and not settings.server_key:
        log.warning("METRICS_REQUIRE_KEY is set but SERVER_KEY is empty: /metrics is open")

    def begin() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.log_fields = {}
        g.obs_started = time.perf_counter()

    def finish(response: Response) -> Response:
        try:
            request_id = g.get("request_id") or request_id_from(None)
            response.headers[REQUEST_ID_HEADER] = request_id
            seconds = time.perf_counter() - g.get("obs_started", time.perf_counter())
            route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            status = response.status_code
            fields = dict(g.get("log_fields") or {})
            usage = _as_usage(fields.pop("usage", None))
            metrics.observe_request(request.method, route, status, seconds)
            if usage or fields.get("failures"):
                metrics.record_usage(usage, fields.get("failures"), fields.get("simulator"))
            line: dict[str, Any] = {
                "request_id": request_id,
                "method": request.method if request.method in _METHODS else "OTHER",
                "route": route,
                "status": status,
                "latency_ms": round(seconds * 1000, 1),
                "client": request.remote_addr,
            }
            for key, value in fields.items():
                if isinstance(value, str) and len(value) > 256:
                    value = value[:256] + "..."
                line.setdefault(key, value)
            for key in (*_USAGE_KEYS, "total_tokens"):
                if key in usage:
                    line.setdefault(key, usage[key])
            access_log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %s %.1fms", line["method"], route, status, line["latency_ms"],
                extra={"fields": line},
            )
        except Exception:  # observing must never turn an answer into an error
            log.exception("could not log or count a request")
        return response

    # First before any other before_request (the rate limiter's included), and
    # last of the after_request functions (they run in reverse order).
    app.before_request_funcs.setdefault(None, []).insert(0, begin)
    app.after_request_funcs.setdefault(None, []).insert(0, finish)

    def metrics_view():
        if require_key:
            if not auth.secret_matches(auth.offered_secrets(request.headers), settings.server_key):
                response = jsonify(
                    {
                        "error": "missing or wrong secret: /metrics needs the header "
                        "'X-Secret-Key' or 'Authorization: Bearer <key>'",
                        "code": "unauthorized",
                    }
                )
                response.status_code = 401
                return response
        body, content_type = metrics.exposition(request.headers.get("Accept"))
        response = Response(body, status=200)
        response.headers["Content-Type"] = content_type
        response.headers["Cache-Control"] = "no-store"
        return response

    app.add_url_rule("/metrics", "metrics", metrics_view, methods=["GET"])
