"""gunicorn settings, from the environment (see .env.example).

Threads serve concurrent requests while a worker waits on an LLM backend; the
worker timeout stays above REQUEST_TIMEOUT so a request's own deadline (a clean
504) always fires before gunicorn kills the worker.
"""
import multiprocessing
import os
import time

from dotenv import load_dotenv

load_dotenv()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


# Loopback by default: an open service (no SERVER_KEY) is not put on the network by
# accident. The Docker image sets BIND=0.0.0.0:5000.
bind = os.environ.get("BIND") or f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
workers = _int("WEB_CONCURRENCY", min(2, multiprocessing.cpu_count()))
threads = _int("GUNICORN_THREADS", 8)
worker_class = "gthread"
_request_timeout = float(os.environ.get("REQUEST_TIMEOUT", 120))
timeout = _int("GUNICORN_TIMEOUT", int(_request_timeout) + 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", int(_request_timeout) + 10)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Bound a worker's life so slow leaks cannot grow forever; jitter avoids restarting all at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
# The app logs every request itself (observability.py, JSON with the request id and the
# client address after ProxyFix); gunicorn's own access log is off unless asked for.
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
# The access log never carries query strings or headers, where a secret could sit.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"

# Behind a reverse proxy (TRUSTED_PROXY_HOPS > 0) the proxy's limits on request lines and
# headers are the ones that answer, in JSON (deploy/nginx.conf.template: 8 KB a line); were
# gunicorn's own tighter, a request between the two would get gunicorn's HTML 400. Alone on
# a network, gunicorn keeps its defaults.
if (os.environ.get("TRUSTED_PROXY_HOPS", "0").strip() or "0") != "0":
    limit_request_line = 0  # unlimited: the proxy bounds it
    limit_request_field_size = 0
    limit_request_fields = 32768  # gunicorn's maximum; the proxy bounds the headers' total size
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# -- Graceful shutdown ------------------------------------------------------------
# On SIGTERM (docker stop, Kubernetes) the master stops accepting connections and
# every worker finishes the requests it has in flight, for up to graceful_timeout
# seconds, before it is killed; SIGINT/SIGQUIT stop at once. The container's own stop
# timeout must exceed graceful_timeout (docker stop -t, terminationGracePeriodSeconds),
# or it kills gunicorn first. Idle keep-alive connections are closed, not waited for.


def when_ready(server):
    """Say so when gunicorn faces the network with no proxy declared in front of it.

    gunicorn is not an edge server: slow clients hold its threads and its own errors are
    HTML. The deployment puts nginx in front (deploy/nginx.conf.template, scripts/stack)
    and sets TRUSTED_PROXY_HOPS; a non-loopback bind without it is most likely a mistake.
    """
    hops = os.environ.get("TRUSTED_PROXY_HOPS", "0").strip() or "0"
    for address in [bind] if isinstance(bind, str) else list(bind):
        host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith(("unix:", "fd://")) else ""
        if host and host not in ("127.0.0.1", "localhost", "::1") and hops == "0":
            server.log.warning(
                "listening on %s with no reverse proxy declared (TRUSTED_PROXY_HOPS=0): gunicorn is "
                "meant behind nginx (deploy/nginx.conf.template, README 'Deploying'), not on the open network",
                address,
            )


def worker_int(worker):
    worker.log.info("worker %s interrupted; in-flight requests are abandoned", worker.pid)


def on_exit(server):
    server.log.info("gunicorn stopped")


# -- Prometheus in multiprocess mode (see observability.py) ---------------------------
# With PROMETHEUS_MULTIPROC_DIR set, every worker writes its counters to files there
# and /metrics adds them up. Values left from an earlier run would be added too, so the
# directory is emptied when gunicorn starts; a worker that exits is reported so that
# its live gauges stop counting (its counters stay: they happened).


# Several workers: /metrics must add up all of them, so multiprocess mode is the default
# (a fresh directory per start); set PROMETHEUS_MULTIPROC_DIR to choose the directory.
if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="neuron-interp-metrics-")


def on_starting(server):
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Load the offline model in each worker before it takes traffic, not on its first request."""
    runtime = getattr(worker.wsgi, "extensions", {}).get("runtime")
    if runtime is not None:
        runtime.warm_up()


_client_body_timeout = float(os.environ.get("CLIENT_BODY_TIMEOUT", 30))


class _BodyDeadlineSocket:
    """The request's socket as gunicorn's body reader sees it: every recv waits at most
    until the body's deadline, so neither a silent nor a trickling client holds the thread.
    The socket is blocking again after each recv, so writing the response is unaffected."""

    def __init__(self, sock, seconds):
        self.raw = sock
        self.deadline = time.monotonic() + seconds

    def recv(self, *args):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request body did not arrive in time")
        self.raw.settimeout(left)
        try:
            return self.raw.recv(*args)
        finally:
            self.raw.settimeout(None)

    def __getattr__(self, name):
        return getattr(self.raw, name)


def _unreader(req):
    unreader = getattr(req, "unreader", None)
    return unreader if hasattr(unreader, "sock") else None


def pre_request(worker, req):
    """Give the body CLIENT_BODY_TIMEOUT seconds; past that the app answers 408 (slowclient.py)."""
    unreader = _unreader(req)
    if unreader is not None:
        raw = getattr(unreader.sock, "raw", unreader.sock)
        unreader.sock = _BodyDeadlineSocket(raw, _client_body_timeout)


def post_request(worker, req, environ, resp):
    """The next request on a kept-alive connection reads its headers from the plain socket."""
    unreader = _unreader(req)
    if unreader is not None and isinstance(unreader.sock, _BodyDeadlineSocket):
        unreader.sock = unreader.sock.raw
