"""The service's own overhead per /score: gunicorn on loopback, the offline simulator.

Starts gunicorn itself on a free loopback port, sends a bounded number of 20 x 64
requests from a few client threads, and prints requests per second, p50 and p99.
Then, in-process, how often the offline simulator ranks each puzzle's true
explanation above all of its false ones.

    .venv/bin/python -m bench.score_overhead [--requests 300] [--clients 4]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from bench.workload import puzzle_records, puzzles, standard_request

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not become healthy")


def post(url: str, body: bytes) -> tuple[int, float, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as r:
        payload = json.loads(r.read())
        return r.status, time.perf_counter() - start, payload


def load(url: str, body: bytes, total: int, clients: int, max_seconds: float) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    scores: set = set()
    lock = threading.Lock()
    counter = iter(range(total))
    stop_at = time.monotonic() + max_seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                if next(counter, None) is None:
                    return
            try:
                status, seconds, payload = post(url + "/score", body)
                score = payload.get("score")
            except urllib.error.HTTPError as exc:
                status, seconds, score = exc.code, 0.0, None
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(seconds)
                scores.add(score)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "statuses": statuses,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "distinct_scores": len(scores),
    }


def puzzle_ranking() -> tuple[int, int, list[str]]:
    from core.records import ActivationRecord
    from runtime import Runtime
    from runtime.settings import Settings
    from scorer.scorers.simulation import score_explanation

    simulator = Runtime(Settings(cache_path="")).simulator("offline")
    wins, lines = 0, []
    data = puzzles()
    for name, puzzle in data.items():
        records = [ActivationRecord(r["tokens"], r["values"]) for r in puzzle_records(puzzle)]

        def score(explanation: str) -> float | None:
            return score_explanation(explanation, records, simulator).score

        def rank(value: float | None) -> float:
            return float("-inf") if value is None else value  # undefined ranks last

        def show(value: float | None) -> str:
            return "  null" if value is None else f"{value:+.3f}"

        true = score(puzzle["explanation"])
        best_false = max((score(e) for e in puzzle["false_explanations"]), key=rank)
        won = rank(true) > rank(best_false)
        wins += won
        lines.append(f"  {name:12s} true {show(true)}  best false {show(best_false)}  {'WIN' if won else '-'}")
    return wins, len(data), lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()

    port = free_port()
    env = {
        **os.environ,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(args.workers),
        "GUNICORN_THREADS": str(args.threads),
        "GUNICORN_ACCESSLOG": "/dev/null",
        "OPENAI_API_KEY": "",
        "OPENAI_BASE_URL": "",
        "SERVER_KEY": "",
        "CACHE_PATH": "",
        "LOG_LEVEL": "WARNING",
    }
    gunicorn = ROOT / ".venv" / "bin" / "gunicorn"
    command = [str(gunicorn if gunicorn.exists() else "gunicorn"), "-c", "gunicorn.conf.py", "server:app"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        body = json.dumps(standard_request()).encode()
        post(url + "/score", body)  # warm each worker's model load
        load(url, body, total=args.workers * 4, clients=args.workers * 2, max_seconds=60)
        result = load(url, body, args.requests, args.clients, args.max_seconds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    print(f"/score overhead, offline simulator, 20 texts x 64 tokens, gunicorn "
          f"{args.workers} workers x {args.threads} threads, {args.clients} clients on loopback")
    print(f"  requests {result['requests']}  statuses {result['statuses']}  "
          f"distinct scores {result['distinct_scores']}")
    print(f"  {result['rps']:.1f} req/s   p50 {result['p50_ms']:.1f} ms   p99 {result['p99_ms']:.1f} ms")

    wins, total, lines = puzzle_ranking()
    print(f"offline simulator on the puzzles: true explanation above every false one in {wins}/{total}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
