"""Load, fault and shutdown benchmarks: gunicorn on loopback, bounded in count and time.

Each run starts gunicorn itself (`.venv/bin/gunicorn -c gunicorn.conf.py server:app`)
on a free 127.0.0.1 port, drives it with N client threads (one keep-alive
connection each) for T seconds with the standard 20 x 64 /score request
(bench/workload.py), stops it with SIGTERM, and reports requests served, status
counts, p50/p99 and throughput. Every answer is checked: a 200's score must
equal the score computed once in-process for the same request, and a request
with no HTTP answer at all (connection error, client timeout) counts as lost.

    .venv/bin/python -m bench.load load      # offline simulator, several workers x threads
    .venv/bin/python -m bench.load faults    # LLM simulator against the loopback stub
    .venv/bin/python -m bench.load shutdown  # SIGTERM while requests are in flight
    .venv/bin/python -m bench.load all

Fault mode: the OpenAI-compatible stub of tests/stub_openai.py runs in this process
on a fixed loopback port, the service is pointed at it (OPENAI_BASE_URL, SIMULATOR=
json by default) with no cache, and the stub is made slow, slower than the
request deadline, flapping (errors and dropped connections on some calls), and
down (stopped, then restarted on the same port) while clients keep sending. For
each fault: what the clients saw and how long the service took to answer
normally again once the backend did.

Only loopback addresses are used; every loop is bounded by --seconds and
--max-requests; gunicorn is always stopped (SIGTERM, then SIGKILL after 30 s).
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from bench.workload import standard_request
from web.bodies import finite_json

ROOT = Path(__file__).resolve().parent.parent

HOST = "127.0.0.1"
SCORE_TOLERANCE = 1e-9


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- gunicorn ------------------------------------------------------------------------


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_boots(self) -> int:
        return self.log().count("Booting worker")

    def worker_timeouts(self) -> int:
        return self.log().count("WORKER TIMEOUT")

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def answered_since(self, mark: int) -> Counter:
        """The service's own access log since `mark`: /score answers by status."""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        counts: Counter = Counter()
        for text in lines:
            if '"neuron_interp.access"' not in text:
                continue
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if entry.get("route") == "/score":
                counts[str(entry.get("status"))] += 1
        return counts


@contextmanager
def gunicorn(workers: int, threads: int, **env_overrides: str) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "BIND": f"{HOST}:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "GUNICORN_ACCESSLOG": "/dev/null",
        "GUNICORN_MAX_REQUESTS": "0",  # no recycling in the middle of a measurement
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "SIMULATOR": "",
        "SERVER_KEY": "",
        "RATE_LIMIT": "",
        "CACHE_PATH": "",
        # INFO: gunicorn's worker boots and the service's one JSON line per request
        # (its cost is part of what is measured, and the lines are counted below).
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(env_overrides)
    binary = ROOT / ".venv" / "bin" / "gunicorn"
    command = [str(binary if binary.exists() else "gunicorn"), "-c", "gunicorn.conf.py", "server:app"]
    log_file = tempfile.NamedTemporaryFile("w", prefix="bench-gunicorn-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    server = Server(port, process, Path(log_file.name))
    try:
        wait_healthy(server)
        yield server
    finally:
        stop(server)
        log_file.close()


def wait_healthy(server: Server, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not server.alive:
            raise SystemExit(f"gunicorn exited:\n{server.log()[-3000:]}")
        try:
            status, _, _ = request(server.port, "GET", "/health", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not become healthy:\n{server.log()[-3000:]}")


def stop(server: Server, grace: float = 30) -> float:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL; the seconds it took."""
    started = time.monotonic()
    if server.alive:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    return time.monotonic() - started


def request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30):
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


# -- clients -------------------------------------------------------------------------


@dataclass
class Outcome:
    started: float  # time.monotonic()
    seconds: float
    status: int | str  # an HTTP status, or "lost: <reason>" when no answer came
    body: dict | None = None


@dataclass
class Check:
    """What a 200 must say: the expected score when every text was simulated."""

    expected_score: float | None
    texts: int
    wrong: list[str] = field(default_factory=list)
    partial: int = 0

    def __call__(self, outcome: Outcome) -> None:
        if outcome.status != 200 or outcome.body is None:
            return
        body = outcome.body
        failures = body.get("failures") or []
        if len(body.get("simulations") or []) != self.texts:
            self.wrong.append(f"{len(body.get('simulations') or [])} simulations for {self.texts} texts")
            return
        if failures:
            self.partial += 1
            if body.get("texts_scored", 0) + len(failures) != self.texts:
                self.wrong.append(f"texts_scored {body.get('texts_scored')} + {len(failures)} failures")
            self._consistent(body)
            return
        score = body.get("score")
        if not _same(score, self.expected_score):
            self.wrong.append(f"score {score!r}, expected {self.expected_score!r}")

    def _consistent(self, body: dict) -> None:
        """A partial answer's score is the pooled correlation of what it returns."""
        from scorer import math as smath

        ok = [s for s in body["simulations"] if s.get("simulation")]
        trues = [s["true_activations"] for s in ok]
        preds = [s["simulation"]["expected_activations"] for s in ok]
        recomputed = smath.pooled_correlation(trues, preds) if ok else None
        if not _same(body.get("score"), recomputed):
            self.wrong.append(f"partial score {body.get('score')!r} != pooled {recomputed!r}")


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0, abs_tol=SCORE_TOLERANCE)


def run_clients(
    port: int,
    body: bytes,
    *,
    clients: int,
    seconds: float,
    max_requests: int,
    timeout: float,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """`clients` threads, each with a keep-alive connection, for `seconds` or `max_requests` in all."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    budget = iter(range(max_requests))

    def client() -> None:
        connection: http.client.HTTPConnection | None = None
        while time.monotonic() < stop_at:
            with lock:
                if next(budget, None) is None:
                    break
            if connection is None:
                connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
            started = time.monotonic()
            try:
                connection.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                raw = response.read()
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                outcome = Outcome(started, time.monotonic() - started, response.status, parsed)
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as exc:
                outcome = Outcome(started, time.monotonic() - started, f"lost: {type(exc).__name__}")
                connection.close()
                connection = None
                time.sleep(0.05)  # a refused connection answers at once: do not spin
            with lock:
                outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
        if connection is not None:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + timeout + 30)
    return sorted(outcomes, key=lambda o: o.started)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def summarize(outcomes: list[Outcome], seconds: float, check: Check | None = None) -> dict:
    statuses = Counter(str(o.status) for o in outcomes)
    codes = Counter(
        f"{o.status} {o.body.get('code')}" for o in outcomes if o.status != 200 and isinstance(o.body, dict)
    )
    ok = [o.seconds * 1000 for o in outcomes if o.status == 200]
    every = [o.seconds * 1000 for o in outcomes]
    if check:
        for o in outcomes:
            check(o)
    return {
        "requests": len(outcomes),
        "statuses": dict(sorted(statuses.items())),
        "error_codes": dict(sorted(codes.items())),
        "lost": sum(1 for o in outcomes if isinstance(o.status, str)),
        "ok_per_second": len(ok) / seconds if seconds else 0.0,
        "p50_ms": percentile(every, 0.50),
        "p99_ms": percentile(every, 0.99),
        "ok_p50_ms": percentile(ok, 0.50),
        "ok_p99_ms": percentile(ok, 0.99),
        "wrong": list(check.wrong[:5]) if check else [],
        "wrong_count": len(check.wrong) if check else 0,
        "partial": check.partial if check else 0,
    }


def line(name: str, s: dict) -> str:
    return (
        f"  {name:<26} {s['requests']:5d} req  {s['ok_per_second']:6.1f} ok/s  "
        f"p50 {s['p50_ms']:7.1f} ms  p99 {s['p99_ms']:7.1f} ms  statuses {s['statuses']}"
        + (f"  codes {s['error_codes']}" if s["error_codes"] else "")
        + (f"  partial {s['partial']}" if s["partial"] else "")
        + f"  lost {s['lost']}  wrong {s['wrong_count']}"
        + (f" {s['wrong']}" if s["wrong"] else "")
    )


# -- load: the offline simulator --------------------------------------------------------


def expected_offline_score(payload: dict) -> float | None:
    """The score the service must answer, computed once in this process with the same code."""
    from core.records import ActivationRecord
    from runtime import Runtime
    from runtime.settings import Settings
    from scorer.scorers.simulation import score_explanation

    simulator = Runtime(Settings(cache_path="", offline_embeddings=True)).simulator("offline")
    records = [ActivationRecord(a["tokens"], a["values"]) for a in payload["activations"]]
    return score_explanation(payload["explanation"], records, simulator).score


def load_mode(args) -> list[dict]:
    payload = standard_request()
    body = json.dumps(payload).encode()
    expected = expected_offline_score(payload)
    texts = len(payload["activations"])
    print(f"load: offline simulator, /score {texts} texts x 64 tokens, {args.clients} clients, "
          f"{args.seconds:.0f} s per setting; expected score {expected!r}")
    results = []
    for setting in args.settings.split(","):
        workers, threads = (int(x) for x in setting.lower().split("x"))
        with gunicorn(workers, threads, OFFLINE_EMBEDDINGS="1") as server:
            # Warm every worker (model load, first-call costs) before measuring.
            run_clients(server.port, body, clients=workers * threads, seconds=30,
                        max_requests=workers * threads * 3, timeout=60)
            mark = server.mark()
            outcomes = run_clients(server.port, body, clients=args.clients, seconds=args.seconds,
                                   max_requests=args.max_requests, timeout=60)
            time.sleep(0.2)  # the last access lines
            summary = summarize(outcomes, args.seconds, Check(expected, texts))
            summary.update(setting=f"{workers}w x {threads}t", boots=server.worker_boots(),
                           timeouts=server.worker_timeouts(), up=server.alive,
                           server_logged=dict(server.answered_since(mark)))
        print(line(summary["setting"], summary)
              + f"  server logged {summary['server_logged']}  worker boots {summary['boots']}")
        results.append(summary)
    return results


# -- faults: the loopback stub ----------------------------------------------------------


class FixedPortStub:
    """tests/stub_openai.StubOpenAI on a port that survives a stop and a start.

    The stub binds port 0 on every start; "down, then back" needs the same address,
    so its server class is swapped for one bound to our port while it starts. And
    stopping the stub only closes its listening socket: the service's keep-alive
    connections would go on being served, so stop() also cuts those.
    """

    def __init__(self, handler=None) -> None:
        import tests.stub_openai as stub_module

        self.module = stub_module
        self.stub = stub_module.StubOpenAI(handler)
        self.port = free_port()
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> None:
        original = self.module.ThreadingHTTPServer
        port, outer = self.port, self

        class Bound(original):  # type: ignore[misc, valid-type]
            allow_reuse_address = True

            def __init__(self, address, handler):
                super().__init__((address[0], port), handler)

            def get_request(self):
                connection, address = super().get_request()
                with outer.lock:
                    outer.connections.add(connection)
                return connection, address

        self.module.ThreadingHTTPServer = Bound
        try:
            self.stub.start()
        finally:
            self.module.ThreadingHTTPServer = original

    def stop(self) -> None:
        self.stub.stop()
        with self.lock:
            connections, self.connections = self.connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Flapping:
    """Delegates to the normal responder, but fails a share of calls (seeded, so repeatable)."""

    def __init__(self, inner, rate: float, seed: int = 7) -> None:
        self.inner, self.rate, self.on = inner, rate, False
        self.random = random.Random(seed)
        self.lock = threading.Lock()

    def __call__(self, request):
        from tests.stub_openai import StubReply, error_body

        with self.lock:
            roll = self.random.random() if self.on else 1.0
        if roll < self.rate / 3:
            return StubReply(500, error_body("stub: flapping 500"))
        if roll < 2 * self.rate / 3:
            return StubReply(503, error_body("stub: flapping 503"), headers={"Retry-After": "0"})
        if roll < self.rate:
            return StubReply(drop=True)
        return self.inner(request)


def recovery(outcomes: list[Outcome], since: float, expected: float | None) -> tuple[float | None, float | None]:
    """Seconds from `since` to the first clean 200 sent after it, and to the start of
    the run of clean 200s that lasts to the end (None if there was none)."""
    after = [o for o in outcomes if o.started >= since]
    clean = [o.status == 200 and not (o.body or {}).get("failures") and _same(o.body.get("score"), expected)
             for o in after]
    first = next((o.started + o.seconds - since for o, c in zip(after, clean) if c), None)
    stable = None
    for i in range(len(after) - 1, -1, -1):
        if not clean[i]:
            break
        stable = after[i].started + after[i].seconds - since
    return first, stable


def probe_health(port: int, stop_event: threading.Event, into: list[float]) -> None:
    """/health every 0.2 s: a slow backend must not starve the workers."""
    while not stop_event.is_set():
        started = time.monotonic()
        try:
            status, _, _ = request(port, "GET", "/health", timeout=10)
            into.append((time.monotonic() - started) * 1000 if status == 200 else float("inf"))
        except OSError:
            into.append(float("inf"))
        stop_event.wait(0.2)


def fault_mode(args) -> dict:
    from tests.stub_openai import SimulationResponder

    payload = standard_request()
    body = json.dumps(payload).encode()
    texts = len(payload["activations"])
    flapping = Flapping(SimulationResponder(), rate=args.flap_rate)
    stub = FixedPortStub(flapping)
    stub.start()
    deadline = args.request_timeout
    env = dict(
        OPENAI_BASE_URL=stub.base_url,
        OPENAI_API_KEY="sk-bench-not-a-real-key",
        SIMULATOR=args.simulator,
        REQUEST_TIMEOUT=str(deadline),
        LLM_CONNECT_TIMEOUT="2",
        LLM_READ_TIMEOUT=str(max(1.0, deadline / 2)),
        LLM_MAX_RETRIES="2",
        LLM_CONCURRENCY="8",
    )
    results: dict[str, Any] = {}
    try:
        with gunicorn(args.workers, args.threads, **env) as server:
            status, raw, _ = request(server.port, "GET", "/health")
            health = json.loads(raw)
            available = health.get("simulator", {}).get("available", [])
            if args.simulator not in available:
                print(f"faults: unknown simulator {args.simulator!r} "
                      f"(available: {available}); nothing measured")
                return {"error": f"unknown simulator {args.simulator}"}
            status, raw, _ = request(server.port, "POST", "/score", body, timeout=deadline + 10)
            if status != 200 or json.loads(raw).get("failures"):
                print(f"faults: the healthy stub did not give a clean 200 ({status}): {raw[:300]!r}")
                return {"error": "no clean baseline"}
            expected = json.loads(raw)["score"]
            print(f"faults: simulator {args.simulator} against the loopback stub, gunicorn "
                  f"{args.workers}w x {args.threads}t, REQUEST_TIMEOUT {deadline} s, "
                  f"{args.clients} clients; healthy score {expected!r}")

            def phase(name: str, seconds: float, during: Callable[[float], None] | None = None,
                      change_at: float | None = None) -> dict:
                health_ms: list[float] = []
                stop_probe = threading.Event()
                prober = threading.Thread(target=probe_health, args=(server.port, stop_probe, health_ms))
                prober.start()
                started = time.monotonic()
                actor = None
                if during:
                    actor = threading.Thread(target=during, args=(started,))
                    actor.start()
                outcomes = run_clients(server.port, body, clients=args.clients, seconds=seconds,
                                       max_requests=args.max_requests, timeout=deadline + 15)
                if actor:
                    actor.join()
                stop_probe.set()
                prober.join()
                summary = summarize(outcomes, seconds, Check(expected, texts))
                finite = [h for h in health_ms if math.isfinite(h)]
                summary.update(
                    health_p99_ms=percentile(finite, 0.99),
                    health_failed=len(health_ms) - len(finite),
                    up=server.alive,
                    timeouts=server.worker_timeouts(),
                    outcomes=outcomes,
                )
                if change_at is not None:
                    summary["recovery_first_s"], summary["recovery_stable_s"] = recovery(
                        outcomes, change_at, expected
                    )
                print(line(name, summary))
                print(f"  {'':<26} /health p99 {summary['health_p99_ms']:.1f} ms, failed "
                      f"{summary['health_failed']}; gunicorn up {summary['up']}, worker timeouts "
                      f"{summary['timeouts']}"
                      + (f"; recovery: first clean 200 after {_s(summary['recovery_first_s'])}, "
                         f"all clean from {_s(summary['recovery_stable_s'])}"
                         if change_at is not None else ""))
                return summary

            # Warm every worker and thread (tokenizer, prompt templates, connection pools).
            run_clients(server.port, body, clients=args.workers * args.threads,
                        seconds=deadline + 10, max_requests=args.workers * args.threads * 2,
                        timeout=deadline + 15)
            results["healthy"] = phase("healthy", args.seconds)

            stub.stub.delay = args.slow_delay
            results["slow"] = phase(f"slow ({args.slow_delay}s per call)", args.seconds)

            stub.stub.delay = deadline + 2
            results["slower"] = phase("slower than the deadline", max(args.seconds, deadline + 4))

            # Back to normal at once, measured by the next phase from its start.
            marks: dict[str, float] = {}

            def heal_now(started: float) -> None:
                stub.stub.delay = 0
                marks["healed"] = time.monotonic()

            results["after slow"] = phase("after slow (healed)", args.seconds, heal_now, change_at=time.monotonic())

            def flap(started: float) -> None:
                flapping.on = True
                time.sleep(args.seconds * 2 / 3)
                flapping.on = False
                marks["flap_end"] = time.monotonic()

            results["flapping"] = phase(f"flapping ({args.flap_rate:.0%} of calls)", args.seconds * 1.5, flap)
            first, stable = recovery(results["flapping"]["outcomes"], marks["flap_end"], expected)
            results["flapping"]["recovery_first_s"], results["flapping"]["recovery_stable_s"] = first, stable
            print(f"  {'':<26} after flapping stopped: first clean 200 after {_s(first)}, "
                  f"all clean from {_s(stable)}")

            def down(started: float) -> None:
                time.sleep(args.seconds / 3)
                stub.stop()
                marks["down"] = time.monotonic()
                time.sleep(args.down_seconds)
                stub.start()
                marks["up"] = time.monotonic()

            results["down"] = phase(f"down {args.down_seconds:.0f}s, then back",
                                    args.seconds / 3 + args.down_seconds + args.seconds, down)
            outcomes = results["down"]["outcomes"]
            during = [o for o in outcomes if marks["down"] <= o.started < marks["up"]]
            seen = Counter(f"{o.status} {(o.body or {}).get('code', '')}".strip() for o in during)
            first, stable = recovery(outcomes, marks["up"], expected)
            results["down"].update(during=dict(seen), recovery_first_s=first, recovery_stable_s=stable)
            print(f"  {'':<26} while down: {dict(seen)}; after restart: first clean 200 after "
                  f"{_s(first)}, all clean from {_s(stable)}")
            status, _, _ = request(server.port, "GET", "/health")
            results["final_health"] = status
            results["worker_boots"] = server.worker_boots()
            print(f"  service after the faults: /health {status}, worker boots {results['worker_boots']} "
                  f"(expected {args.workers}), worker timeouts {server.worker_timeouts()}")
    finally:
        stub.stop()
    for value in results.values():
        if isinstance(value, dict):
            value.pop("outcomes", None)
    return results


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


# -- shutdown: SIGTERM with requests in flight ----------------------------------------------


def shutdown_mode(args) -> dict:
    """In-flight requests finish after SIGTERM; new connections are refused; the master exits."""
    from tests.stub_openai import SimulationResponder

    payload = standard_request()
    body = json.dumps(payload).encode()
    stub = FixedPortStub(SimulationResponder())
    stub.start()
    stub.stub.delay = args.shutdown_delay
    env = dict(OPENAI_BASE_URL=stub.base_url, OPENAI_API_KEY="sk-bench-not-a-real-key",
               SIMULATOR=args.simulator, REQUEST_TIMEOUT="30", LLM_CONCURRENCY="8")
    try:
        with gunicorn(2, 4, **env) as server:
            _, raw, _ = request(server.port, "GET", "/health")
            if args.simulator not in json.loads(raw).get("simulator", {}).get("available", []):
                print(f"shutdown: unknown simulator {args.simulator!r}; nothing measured")
                return {"error": f"unknown simulator {args.simulator}"}
            outcomes: list[Outcome] = []
            lock = threading.Lock()

            def one() -> None:
                started = time.monotonic()
                try:
                    status, raw, _ = request(server.port, "POST", "/score", body, timeout=60)
                    outcome = Outcome(started, time.monotonic() - started, status, json.loads(raw))
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    outcome = Outcome(started, time.monotonic() - started, f"lost: {type(exc).__name__}")
                with lock:
                    outcomes.append(outcome)

            clients = [threading.Thread(target=one) for _ in range(args.inflight)]
            for t in clients:
                t.start()
            time.sleep(min(1.0, args.shutdown_delay))  # the requests are in the workers now
            term_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            try:
                status, _, _ = request(server.port, "GET", "/health", timeout=2)
                late = f"answered {status}"
            except ConnectionRefusedError:
                late = "refused"
            except OSError as exc:  # accepted by the kernel's backlog, never served
                late = f"not served ({type(exc).__name__})"
            for t in clients:
                t.join(timeout=90)
            server.process.wait(timeout=120)
            exited_after = time.monotonic() - term_at
            statuses = Counter(str(o.status) for o in outcomes)
            longest = max((o.seconds for o in outcomes), default=0.0)
            print(f"shutdown: {args.inflight} /score in flight (each ~{longest:.1f} s) at SIGTERM: "
                  f"statuses {dict(statuses)}; a new connection after SIGTERM: {late}; "
                  f"gunicorn exited {exited_after:.1f} s after SIGTERM, exit code {server.process.returncode}")
            return {"inflight": args.inflight, "statuses": dict(statuses), "new_connection": late,
                    "exit_seconds": exited_after, "exit_code": server.process.returncode,
                    "request_seconds": longest}
    finally:
        stub.stop()


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["load", "faults", "shutdown", "all"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=20_000, help="per phase, all clients together")
    parser.add_argument("--settings", default="1x1,1x8,2x1,2x4,2x8", help="load: WORKERSxTHREADS,...")
    parser.add_argument("--simulator", default="json", help="faults/shutdown: json or batched")
    parser.add_argument("--workers", type=int, default=2, help="faults")
    parser.add_argument("--threads", type=int, default=8, help="faults")
    parser.add_argument("--request-timeout", type=float, default=6.0, help="faults: REQUEST_TIMEOUT")
    parser.add_argument("--slow-delay", type=float, default=0.3, help="faults: seconds per LLM call")
    parser.add_argument("--flap-rate", type=float, default=0.3, help="faults: share of failing calls")
    parser.add_argument("--down-seconds", type=float, default=5.0)
    parser.add_argument("--inflight", type=int, default=6, help="shutdown: requests in flight")
    parser.add_argument("--shutdown-delay", type=float, default=0.7, help="shutdown: seconds per LLM call")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 120.0)  # bounded, whatever is asked

    report: dict[str, Any] = {}
    if args.mode in ("load", "all"):
        report["load"] = load_mode(args)
    if args.mode in ("faults", "all"):
        report["faults"] = fault_mode(args)
    if args.mode in ("shutdown", "all"):
        report["shutdown"] = shutdown_mode(args)
    if args.json:
        # Percentiles of empty sets are NaN: written as null, so the file is valid JSON.
        args.json.write_text(json.dumps(finite_json(report), indent=2, default=str, allow_nan=False))
    bad = [r for r in report.get("load", []) if r["lost"] or r["wrong_count"] or not r["up"]]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
