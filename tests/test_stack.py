"""The documented deployment, for real: scripts/stack (nginx, two gunicorn replicas, Redis).

The stack runs once for this module, against the loopback OpenAI stub. Every client here
connects from its own loopback address (127.0.x.y; Linux routes all of 127/8 to lo), so
nginx sees, and the rate limiter counts, each as a different client. The tests run in the
order written: the last two kill a replica and then stop the whole stack.

nginx and redis-server must be installed (scripts/test installs them); nothing here skips.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import NEURONPEDIA_EXAMPLE, ROOT
from tests.stub_openai import StubOpenAI

API_KEY = "sk-stack-upstream-key-40411"
SCORE = {"explanation": "fox and leopard", "activations": NEURONPEDIA_EXAMPLE["activations"]}
TIMEOUT = 10  # every client call: generous, never a timing target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, proc: subprocess.Popen, port: int, tmpdir: Path, stub: StubOpenAI) -> None:
        self.proc, self.port, self.tmpdir, self.stub = proc, port, tmpdir, stub
        self.out: list[str] = []
        self.err: list[str] = []
        self.ready = threading.Event()
        for stream, lines in ((proc.stdout, self.out), (proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()

    def _read(self, stream, lines: list[str]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if line.startswith("stack: ready"):
                self.ready.set()

    def said(self, pattern: str) -> re.Match:
        for line in list(self.out):
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"the stack never printed {pattern!r}")

    @property
    def replicas(self) -> dict[int, tuple[int, int]]:
        """replica number -> (port, pid of its gunicorn master)."""
        found = {}
        for line in list(self.out):
            m = re.match(r"stack: replica (\d+) http://127\.0\.0\.1:(\d+) \(pid (\d+)\)", line)
            if m:
                found[int(m[1])] = (int(m[2]), int(m[3]))
        return found

    def json_lines(self, lines: list[str]) -> list[dict]:
        return [json.loads(line) for line in list(lines) if line.startswith("{")]

    def upstreams(self, request_ids: set[str]) -> list[str]:
        """The replica address(es) nginx used for these requests (its JSON access log)."""
        return [
            entry["upstream"]
            for entry in self.json_lines(self.out)
            if entry.get("logger") == "nginx.access" and entry.get("request_id") in request_ids
        ]


def request(stack: Stack, method: str, path: str, body: dict | None = None, *, source: str,
            headers: dict | None = None) -> tuple[int, dict, dict, str]:
    """One request through nginx from the loopback address `source`: status, JSON, headers, request id."""
    request_id = uuid.uuid4().hex
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=TIMEOUT, source_address=(source, 0))
    try:
        payload = json.dumps(body).encode() if body is not None else None
        sent = {"X-Request-ID": request_id, **(headers or {})}
        if payload is not None:
            sent["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        data = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json"), data[:200]
        return response.status, json.loads(data), dict(response.getheaders()), request_id
    finally:
        conn.close()


def raw_exchange(stack: Stack, data: bytes, source: str = "127.0.30.1") -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=TIMEOUT, source_address=(source, 0)) as s:
        s.sendall(data)
        reply = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            reply += chunk
            head, sep, body = reply.partition(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length: *(\d+)", head)
            if sep and length and len(body) >= int(length[1]):
                break
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert re.search(rb"(?i)content-type: application/json", head), head
    return status, json.loads(body), head


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmpdir = tmp_path_factory.mktemp("stack-tmp")
    port = _free_port()
    stub = StubOpenAI().start()
    env = {
        **os.environ,
        "STACK_PORT": str(port),
        "REPLICAS": "2",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "4",
        "TMPDIR": str(tmpdir),  # everything temporary lands here: checked empty at the end
        "OPENAI_BASE_URL": stub.base_url,
        "OPENAI_API_KEY": API_KEY,
        "SIMULATOR_MODEL": "stub-model",
        "LLM_MAX_RETRIES": "1",
        "REQUEST_TIMEOUT": "20",
        "RATE_LIMIT": "5/minute",
        "SERVER_KEY": "",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "NGINX_WORKERS": "2",
    }
    proc = subprocess.Popen([str(ROOT / "scripts" / "stack")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    running = Stack(proc, port, tmpdir, stub)
    deadline = time.monotonic() + 150
    while not running.ready.wait(0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            stub.stop()
            pytest.fail("the stack did not start:\n" + "\n".join((running.out + running.err)[-40:]))
    yield running
    if proc.poll() is None:  # a test failed before the last one stopped it
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    stub.stop()


def test_a_repeated_score_costs_no_llm_call_on_either_replica(stack):
    status, first, _, first_id = request(stack, "POST", "/score", SCORE, source="127.0.10.1")
    assert status == 200 and first["usage"]["llm_calls"] >= 1
    assert first["simulator"] == {"name": "batched", "model": "stub-model", "offline": False}
    calls = stack.stub.calls()
    assert calls >= 1
    repeat_ids = set()
    for _ in range(4):
        status, again, _, request_id = request(stack, "POST", "/score", SCORE, source="127.0.10.1")
        repeat_ids.add(request_id)
        assert status == 200
        assert again["usage"]["llm_calls"] == 0 and again["usage"]["cache_hits"] == 2
        assert again["score"] == first["score"]
    assert stack.stub.calls() == calls  # the LLM was asked once, by one replica
    ports = {str(p) for p, _ in stack.replicas.values()}
    served = {u.rsplit(":", 1)[1] for u in stack.upstreams(repeat_ids)}
    assert served == ports  # both replicas answered from the one cache
    (first_upstream,) = stack.upstreams({first_id})
    assert served - {first_upstream.rsplit(":", 1)[1]}  # including the one that did not ask the LLM


def test_the_client_address_nginx_saw_is_in_the_replicas_logs(stack):
    status, _, _, request_id = request(
        stack, "GET", "/openapi.json", source="127.0.10.2", headers={"X-Forwarded-For": "203.0.113.9"}
    )
    assert status == 200
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = [e for e in stack.json_lines(stack.err) if e.get("request_id") == request_id]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    (line,) = [e for e in lines if e.get("logger") == "neuron_interp.access"]
    # The forged header is left of what nginx appended: only nginx's word counts.
    assert line["client"] == "127.0.10.2"
    assert line["route"] == "/openapi.json" and line["status"] == 200


def test_the_rate_limit_is_shared_by_every_replica(stack):
    answers = [request(stack, "GET", "/openapi.json", source="127.0.10.3") for _ in range(6)]
    assert [a[0] for a in answers] == [200] * 5 + [429]
    status, body, headers, _ = answers[-1]
    assert body["code"] == "rate_limited" and body["error"]
    assert int(headers["Retry-After"]) >= 1
    served = {u.rsplit(":", 1)[1] for u in stack.upstreams({a[3] for a in answers})}
    assert len(served) == 2  # the five were spread over both replicas, and still only five passed
    # Another client has its own allowance.
    assert request(stack, "GET", "/openapi.json", source="127.0.10.4")[0] == 200


@pytest.mark.parametrize(
    "data,status,code",
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "headers_too_large"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\n"
         + b"".join(b"X-H%d: %s\r\n" % (i, b"c" * 7000) for i in range(6)) + b"\r\n", 431, "headers_too_large"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "invalid_request"),
        (b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{}\n",
         400, "invalid_request"),
        (b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ-not-a-size\r\n{}\r\n0\r\n\r\n",
         400, "invalid_request"),
        (b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{",
         413, "payload_too_large"),
    ],
    ids=["long-request-line", "long-header", "too-many-header-bytes", "malformed", "ambiguous-framing",
         "bad-chunk", "too-large"],
)
def test_nginx_answers_its_own_errors_in_json(stack, data, status, code):
    got, body, head = raw_exchange(stack, data)
    assert (got, body["code"]) == (status, code)
    assert body["error"] and b"<html" not in head


def test_a_gunicorn_limit_never_shows_through(stack):
    # Longer than gunicorn's default request line (4094) but within nginx's: the replica
    # answers, in JSON, rather than gunicorn's HTML 400.
    status, body, _ = raw_exchange(stack, b"GET /" + b"a" * 6000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, body["code"]) == (404, "not_found")
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))  # over gunicorn's default of 100 fields
    status, body, _ = raw_exchange(stack, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + many + b"\r\n")
    assert status == 200 and body["status"] == "ok"


def test_health_answers_while_slow_clients_hold_sockets(stack):
    slow_headers, slow_bodies = [], []
    stop = threading.Event()
    try:
        for i in range(64):
            s = socket.create_connection(("127.0.0.1", stack.port), timeout=TIMEOUT,
                                         source_address=(f"127.0.20.{i + 1}", 0))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
            slow_headers.append(s)
        for i in range(64):
            s = socket.create_connection(("127.0.0.1", stack.port), timeout=TIMEOUT,
                                         source_address=(f"127.0.21.{i + 1}", 0))
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{")
            slow_bodies.append(s)

        def trickle():  # one byte a second on every body socket
            while not stop.wait(1.0):
                for s in slow_bodies:
                    try:
                        s.sendall(b" ")
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        for n in range(4):
            status, body, _, _ = request(stack, "GET", "/health", source=f"127.0.22.{n + 1}")
            assert status == 200 and body["status"] == "ok"
            time.sleep(0.5)
        # Real work gets through too (from the cache: no LLM call).
        status, body, _, _ = request(stack, "POST", "/score", SCORE, source="127.0.22.10")
        assert status == 200 and body["usage"]["llm_calls"] == 0
    finally:
        stop.set()
        for s in slow_headers + slow_bodies:
            s.close()


def test_a_killed_replica_is_routed_around(stack):
    replicas = stack.replicas
    (dead_port, dead_pid), (live_port, _) = replicas[1], replicas[2]
    os.kill(dead_pid, signal.SIGKILL)
    # Every request from the moment of the kill succeeds: nginx retries a refused or reset
    # connection on the other replica (POSTs too: scoring changes nothing).
    ids = set()
    for n in range(12):
        status, body, _, request_id = request(stack, "POST", "/score", SCORE, source=f"127.0.23.{n + 1}")
        assert status == 200 and body["usage"]["llm_calls"] == 0
        ids.add(request_id)
        time.sleep(0.2)
    # The dead master's workers notice and leave; then its port refuses connections.
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", dead_port), timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the killed replica's port still accepts connections"
        time.sleep(0.2)
    late = set()
    for n in range(6):
        status, _, _, request_id = request(stack, "POST", "/score", SCORE, source=f"127.0.24.{n + 1}")
        assert status == 200
        late.add(request_id)
    assert all(u.endswith(f":{live_port}") for u in stack.upstreams(late))
    stack.said(rf"replica 1 \(pid {dead_pid}\) exited")


def _groups_members(groups: set[int]) -> set[int]:
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) in groups and state != "Z":
            members.add(int(entry.name))
    return members


def test_sigterm_leaves_no_process_and_no_temporary_folder(stack):
    run_dir = Path(stack.said(r"stack: run dir +(\S+)")[1])
    assert run_dir.is_dir()
    groups = {pid for _, pid in stack.replicas.values()}
    groups.add(int(stack.said(r"stack: nginx .*\(pid (\d+)")[1]))
    groups.add(int(stack.said(r"stack: redis .*\(pid (\d+)")[1]))
    before = _groups_members(groups)
    assert len(before) >= 5  # nginx master and workers, redis, a replica and its workers
    stack.proc.send_signal(signal.SIGTERM)
    assert stack.proc.wait(timeout=60) == 0
    assert _groups_members(groups) == set()
    assert not run_dir.exists()
    assert list(stack.tmpdir.iterdir()) == []  # nor anything gunicorn or Python left in TMPDIR
    assert any(line.startswith("stack: stopped") for line in stack.out)
    # Every line any part of the stack logged as JSON is valid JSON (json_lines parses
    # them), and the upstream key never reached a log.
    stack.json_lines(stack.out)
    stack.json_lines(stack.err)
    assert not any(API_KEY in line for line in stack.out + stack.err)
