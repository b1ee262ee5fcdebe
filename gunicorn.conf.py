"""gunicorn settings, from the environment (see .env.example).

Threads serve concurrent requests while a worker waits on an LLM backend; the
worker timeout stays above REQUEST_TIMEOUT so a request's own deadline (a clean
504) always fires before gunicorn kills the worker.
"""
import multiprocessing
import os

from dotenv import load_dotenv

load_dotenv()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


bind = os.environ.get("BIND") or f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
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
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# The access log never carries query strings or headers, where a secret could sit.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
