"""`neuron-interp batch`: every latent written once, resumable after SIGKILL, caps, fan-out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.batch import HttpTransport, InProcessTransport, Options, Output, run
from cli.inputs import InputError, Latent, read_latents
from tests.conftest import SHARED_DATA, make_settings
from tests.stub_openai import StubOpenAI, refused_url

EXPORT = SHARED_DATA / "neuronpedia-gpt2-small-res-jb"
BIN = Path(sys.executable).with_name("neuron-interp")


def lines(path: Path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_text().splitlines()]


def app_transport(**overrides):
    from server import create_app

    return InProcessTransport(create_app(make_settings(**overrides)))


def test_an_export_folder_is_read_as_latents_cut_to_windows():
    latents = read_latents(EXPORT, texts=20, window=64)
    assert [latent.id for latent in latents] == [f"gpt2-small:0:res-jb:{i}" for i in (0, 1, 2, 3)]
    for latent in latents:
        assert 1 <= len(latent.activations) <= 20
        assert all(len(t["tokens"]) == len(t["values"]) == 64 for t in latent.activations)
        assert latent.explanation is None
    maxima = [max(t["values"]) for t in latents[0].activations]
    assert maxima == sorted(maxima, reverse=True)  # the strongest texts, strongest first


def test_bad_inputs_are_clear_errors(tmp_path):
    (tmp_path / "dup.jsonl").write_text('{"id": 1, "activations": []}\n{"id": 1, "activations": []}\n')
    with pytest.raises(InputError, match="the id '1' appears more than once"):
        read_latents(tmp_path / "dup.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"id": 1, "activations": []}\n{"id": 2}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: each line needs an \"id\" and an \"activations\" list"):
        read_latents(tmp_path / "bad.jsonl")


def test_a_run_writes_each_latent_once_with_scores_equal_to_single_calls(tmp_path):
    out = tmp_path / "out.jsonl"
    transport = app_transport()
    latents = read_latents(EXPORT)
    output = Output(out)
    summary = run(latents, output, transport, Options(), concurrency=2)
    output.close()
    written = {line["id"]: line for line in lines(out)}
    assert sorted(written) == sorted(latent.id for latent in latents) and len(lines(out)) == 4
    assert summary.written == 4 and summary.errors == 1 and summary.retry_later == 0
    zero = written["gpt2-small:0:res-jb:1"]  # every value zero: nothing to explain, written once with its error
    assert zero["error"]["status"] == 400 and zero["score"] is None
    for latent in latents:
        line = written[latent.id]
        if line["error"]:
            continue
        assert line["explained"] is True and line["explanation"]
        single = transport.post("/score", {"explanation": line["explanation"], "activations": latent.activations})
        assert line["score"] == single["score"]
    # A rerun writes nothing more.
    again = Output(out)
    assert run(latents, again, transport, Options()).written == 0
    again.close()
    assert len(lines(out)) == 4


def offline_run_of_many(tmp_path: Path, copies: int = 60) -> tuple[list[str], Path, dict, int]:
    """A JSONL of `copies` copies of the export's non-zero latents (distinct ids), the command
    that runs it offline into out.jsonl, its environment, and how many latents it holds."""
    usable = [latent for latent in read_latents(EXPORT) if any(max(t["values"]) > 0 for t in latent.activations)]
    source = tmp_path / "latents.jsonl"
    with open(source, "w") as f:
        for copy in range(copies):
            for latent in usable:
                f.write(json.dumps({"id": f"{latent.id}#{copy}", "activations": latent.activations}) + "\n")
    env = {**os.environ, "CACHE_PATH": "", "LOG_LEVEL": "WARNING"}
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SERVER_KEY"):
        env.pop(key, None)
    command = [str(BIN), "batch", str(source), str(tmp_path / "out.jsonl"), "--concurrency", "2", "--quiet"]
    return command, tmp_path / "out.jsonl", env, copies * len(usable)


def test_sigkill_midway_then_resume_writes_each_latent_exactly_once(tmp_path):
    command, out, env, total = offline_run_of_many(tmp_path)
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 10):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    first = out.read_bytes()
    assert 10 <= first.count(b"\n") < total, "the run was not stopped midway"
    # Whatever SIGKILL left is whole lines; a cut line left by something else is dropped on resume.
    assert first.endswith(b"\n")
    with open(out, "ab") as f:
        f.write(b'{"id": "cut-off", "expl')
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [line["id"] for line in lines(out)]
    assert len(ids) == total and len(set(ids)) == total
    assert "cut-off" not in ids
    already = first.count(b"\n")
    assert f"{already} already in the output" in done.stderr


def test_llm_run_stops_cleanly_at_the_token_cap_and_resumes(tmp_path):
    latents = read_latents(EXPORT)
    with StubOpenAI() as stub:
        transport = app_transport(openai_base_url=stub.base_url, simulator="json", explainer_backend="offline")
        out = tmp_path / "out.jsonl"
        output = Output(out)
        summary = run(latents, output, transport, Options(), concurrency=1, max_tokens=1)
        output.close()
        assert summary.stopped_because == "--max-tokens 1 reached"
        first = lines(out)
        assert 1 <= len(first) < 4 and summary.tokens > 0
        assert all(line["usage"].get("prompt_tokens", 0) > 0 for line in first if not line["error"])
        output = Output(out)
        rest = run(latents, output, transport, Options(), concurrency=2)
        output.close()
        assert rest.stopped_because == "done" and rest.skipped == len(first)
    assert sorted(line["id"] for line in lines(out)) == sorted(latent.id for latent in latents)


def test_fan_out_routes_around_a_dead_service_and_leaves_failures_for_a_rerun(tmp_path):
    import threading

    from werkzeug.serving import make_server

    from server import create_app

    server = make_server("127.0.0.1", 0, create_app(make_settings(log_level="WARNING")), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        live = f"http://127.0.0.1:{server.server_port}"
        dead = refused_url().removesuffix("/v1")
        latents = read_latents(EXPORT)
        out = tmp_path / "out.jsonl"
        output = Output(out)
        summary = run(latents, output, HttpTransport([dead, live], retries=0), Options(), concurrency=2)
        output.close()
        assert summary.written == 4 and summary.retry_later == 0
        # Only dead services: nothing is written, every latent is left for the rerun.
        out2 = tmp_path / "out2.jsonl"
        output = Output(out2)
        summary = run(latents, output, HttpTransport([dead], retries=0), Options(), concurrency=2)
        output.close()
        assert summary.written == 0 and summary.retry_later == 4 and out2.read_text() == ""
    finally:
        server.shutdown()


def test_an_output_that_is_not_ours_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("not json\n")
    with pytest.raises(InputError, match="is not a line this command wrote"):
        Output(out)


def test_every_latent_in_flight_keeps_its_connection_to_a_service(tmp_path, caplog):
    # More latents in flight than requests' default pool of 10: each keeps one kept-alive
    # connection, rather than the ones past 10 being closed and opened again per request.
    import logging
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Service(BaseHTTPRequestHandler):  # canned answers, kept-alive connections
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(0.05)  # so that many requests are in flight at once
            answer = {"explanation": "fast animals"} if self.path == "/explain" else {"score": 0.5, "usage": {}}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    server.daemon_threads = True
    accepted = []
    accept = server.get_request

    def counted():
        connection = accept()
        accepted.append(connection)
        return connection

    server.get_request = counted
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        activations = [{"tokens": ["a", "b"], "values": [0, 1]}]
        latents = [Latent(id=str(k), activations=activations) for k in range(64)]
        output = Output(tmp_path / "out.jsonl")
        transport = HttpTransport([f"http://127.0.0.1:{server.server_port}"], connections=16)
        with caplog.at_level(logging.WARNING, logger="urllib3"):
            summary = run(latents, output, transport, Options(), concurrency=16)
        output.close()
    finally:
        server.shutdown()
        server.server_close()
    assert summary.written == 64 and summary.retry_later == 0
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert len(accepted) <= 16  # 128 requests over at most one connection per latent in flight


def test_a_cost_cap_the_service_cannot_price_stops_the_run(tmp_path):
    # Without MODEL_PRICES the service answers `estimated_cost_usd: null`: a --max-cost-usd
    # run stops after the first latent that spent tokens, rather than spending without a limit.
    latents = read_latents(EXPORT)
    with StubOpenAI() as stub:
        unpriced = app_transport(openai_base_url=stub.base_url, simulator="batched", explainer_backend="offline")
        output = Output(tmp_path / "unpriced.jsonl")
        summary = run(latents, output, unpriced, Options(), concurrency=1, max_cost_usd=100.0)
        output.close()
        assert "--max-cost-usd 100.0 cannot be kept" in summary.stopped_because
        assert "MODEL_PRICES" in summary.stopped_because
        first = lines(tmp_path / "unpriced.jsonl")
        assert len(first) == 1 and first[0]["usage"]["unpriced_tokens"] > 0
        assert summary.retry_later == len(latents) - 1
        assert "tokens with no price" in summary.render()
        # Priced, the same cap lets every latent through and the cost is counted.
        priced = app_transport(openai_base_url=stub.base_url, simulator="batched", explainer_backend="offline",
                               model_prices="gpt-4o-mini=0.15/0.60")
        output = Output(tmp_path / "priced.jsonl")
        summary = run(latents, output, priced, Options(), concurrency=1, max_cost_usd=100.0)
        output.close()
    assert summary.stopped_because == "done" and summary.written == len(latents)
    assert summary.cost_usd > 0 and summary.unpriced_tokens == 0
    assert all("unpriced_tokens" not in line["usage"] for line in lines(tmp_path / "priced.jsonl"))


def test_ctrl_c_keeps_the_latents_in_flight_and_a_rerun_finishes(tmp_path):
    command, out, env, total = offline_run_of_many(tmp_path)
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-1000:]
    assert "finishing the latents in flight" in stderr and "stopped: interrupted" in stderr
    first = lines(out)  # every line whole JSON
    assert 5 <= len(first) < total
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = [line["id"] for line in lines(out)]
    assert len(ids) == total and len(set(ids)) == total
