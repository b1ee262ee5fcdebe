"""`neuron-interp batch INPUT OUTPUT`: explain and score every latent of a dictionary.

For each latent of INPUT (see `cli/inputs.py`) it explains when there is no explanation (or
always, with `--explain STYLE`), scores, and appends one JSON line to OUTPUT. Against one or
several `--url` (round robin: replicas or whole stacks), or in this process when none is given.

Resumable: a rerun skips the ids OUTPUT already holds. Each line is written whole with one
`write` on a file opened for appending, so a run killed even with SIGKILL leaves no partial
line (a cut last line, say from a full disk, is dropped on the next run). A latent that fails
for a reason that may pass (5xx, network, timeout) is not written, so the rerun tries it again;
one the service refuses (4xx: nothing to explain, a rejected explanation) is written with its
`error`, once.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cli.client import Client, ServiceError
from cli.inputs import InputError, Latent, read_latents

SCORE_OPTIONS = ("simulator", "scorer", "model")


# -- where requests go ---------------------------------------------------------------


class HttpTransport:
    """Round robin over the services at `urls`; a service that cannot be reached is skipped
    for that request (the next one is tried), so a dead replica costs no latent.

    Each service's connection pool holds `connections` kept-alive connections: as many as
    latents in flight (`--concurrency`), since any of them may be talking to one service at
    once. (requests' default of 10 would close and reopen a connection per request past 10.)"""

    def __init__(self, urls: list[str], *, secret: str | None = None, timeout: float = 300.0, retries: int = 5,
                 connections: int = 10):
        import requests
        from requests.adapters import HTTPAdapter

        self.clients = []
        for url in urls:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, connections))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self.clients.append(Client(url, secret=secret, timeout=timeout, retries=retries, session=session))
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def post(self, path: str, body: dict) -> dict:
        import requests

        with self._lock:
            first = next(self._turn)
        error: Exception | None = None
        for offset in range(len(self.clients)):
            client = self.clients[(first + offset) % len(self.clients)]
            try:
                return client.post(path, body)
            except requests.RequestException as exc:
                error = exc
        raise error  # type: ignore[misc]


class InProcessTransport:
    """The service itself, built in this process from the environment (no server needed)."""

    def __init__(self, app: Any = None) -> None:
        if app is None:
            from runtime import Settings
            from server import create_app

            # The access log would run through the progress bar: warnings only.
            app = create_app(Settings.from_env().with_overrides(log_level="WARNING"))
        self.app = app
        self._local = threading.local()

    def post(self, path: str, body: dict) -> dict:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.app.test_client()
        response = client.post(path, json=body)
        data = response.get_json(silent=True)
        if response.status_code == 200 and isinstance(data, dict):
            return data
        data = data if isinstance(data, dict) else {}
        raise ServiceError(response.status_code, data.get("code", "bad_response"), data.get("error", ""))


# -- one latent ---------------------------------------------------------------------


@dataclass
class Options:
    explain_style: str | None = None  # explain even when the latent has an explanation
    simulator: str | None = None
    scorer: str | None = None
    model: str | None = None
    explainer: str | None = None  # offline or openai; the service's default when None


class Transient(Exception):
    """A failure that may pass: the latent is left for the next run."""


def process(latent: Latent, transport: Any, options: Options) -> dict:
    """The output line of one latent; Transient when it should be tried again later."""
    line: dict[str, Any] = {"id": latent.id, "explanation": latent.explanation, "explained": False}
    usage: dict[str, float] = {}
    try:
        if latent.explanation is None or options.explain_style:
            body = {"activations": latent.activations, "style": options.explain_style or "original"}
            if latent.random_activations:
                body["random_activations"] = latent.random_activations
            if options.model:
                body["model"] = options.model
            if options.explainer:
                body["explainer"] = options.explainer
            explained = transport.post("/explain", body)
            line["explanation"] = explained["explanation"]
            line["explained"] = True
            _add_usage(usage, explained.get("usage"))
        body = {"explanation": line["explanation"], "activations": latent.activations}
        if latent.random_activations:
            body["random_activations"] = latent.random_activations
        for name in SCORE_OPTIONS:
            if getattr(options, name):
                body[name] = getattr(options, name)
        scored = transport.post("/score", body)
    except ServiceError as exc:
        if exc.status >= 500 or exc.status in (408, 429):
            raise Transient(str(exc)) from None
        line.update(score=None, error={"status": exc.status, "code": exc.code, "message": exc.message})
        line["usage"] = usage
        return line
    except Exception as exc:  # network errors, timeouts
        raise Transient(f"{type(exc).__name__}: {exc}") from None
    _add_usage(usage, scored.get("usage"))
    line.update(
        score=scored.get("score"),
        score_interval=scored.get("score_interval"),
        top_score=scored.get("top_score"),
        random_score=scored.get("random_score"),
        scorer=scored.get("scorer"),
        metric=scored.get("metric"),
        scored_by=scored.get("simulator") or scored.get("judge"),
        texts_scored=scored.get("texts_scored"),
        failures=scored.get("failures", []),
        usage=usage,
        error=None,
    )
    return line


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _add_usage(total: dict, usage: Any) -> None:
    """Adds one response's usage to the line's. Tokens the service put no price on (no
    MODEL_PRICES for that model: `estimated_cost_usd` null) are also counted apart, as
    `unpriced_tokens`, so that a cost cap knows it cannot see them."""
    if not isinstance(usage, dict):
        return
    for key in ("llm_calls", "prompt_tokens", "completion_tokens", "cache_hits", "cached_prompt_tokens", "estimated_cost_usd"):
        value = usage.get(key)
        if _number(value):
            total[key] = total.get(key, 0) + value
    tokens = sum(usage.get(key) for key in ("prompt_tokens", "completion_tokens") if _number(usage.get(key)))
    if tokens and not _number(usage.get("estimated_cost_usd")):
        total["unpriced_tokens"] = total.get("unpriced_tokens", 0) + tokens


# -- the output file ----------------------------------------------------------------


class Output:
    """OUTPUT opened for appending; `done` holds the ids it already has."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: set[str] = set()
        if path.exists():
            self._recover()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def _recover(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # a cut last line: not a result
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        for number, raw in enumerate(complete.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                self.done.add(str(json.loads(raw)["id"]))
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{self.path}:{number} is not a line this command wrote; not appending to it") from None

    def write(self, line: dict) -> None:
        data = (json.dumps(line, allow_nan=False, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, data)
            if written != len(data):  # a full disk: stop rather than leave a cut line behind
                raise OSError(f"wrote {written} of {len(data)} bytes to {self.path}")

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)


# -- the run ------------------------------------------------------------------------


@dataclass
class Summary:
    total: int = 0
    skipped: int = 0
    written: int = 0
    errors: int = 0
    retry_later: int = 0
    with_failures: int = 0
    scores: list[float] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_tokens: int = 0  # tokens with no estimated cost: the cost is at least cost_usd
    stopped_because: str = "done"
    elapsed: float = 0.0
    transient: list[str] = field(default_factory=list)

    def add(self, line: dict) -> None:
        self.written += 1
        usage = line.get("usage") or {}
        self.tokens += int(usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        self.cost_usd += float(usage.get("estimated_cost_usd", 0.0))
        self.unpriced_tokens += int(usage.get("unpriced_tokens", 0))
        if line.get("error"):
            self.errors += 1
        elif line.get("score") is not None:
            self.scores.append(float(line["score"]))
        if line.get("failures"):
            self.with_failures += 1

    def render(self) -> str:
        lines = [
            f"latents: {self.total} in the input, {self.skipped} already in the output, {self.written} written "
            f"({self.errors} refused by the service, {self.with_failures} with failed texts), "
            f"{self.retry_later} left for a rerun",
            f"tokens: {self.tokens:,}; estimated cost: ${self.cost_usd:.4f}"
            + (f" (and {self.unpriced_tokens:,} tokens with no price)" if self.unpriced_tokens else "")
            + f"; {self.elapsed:.1f} s; stopped: {self.stopped_because}",
        ]
        if self.scores:
            lines.append("scores:")
            lines.extend(histogram(self.scores))
        for reason in self.transient[:5]:
            lines.append(f"  left for a rerun: {reason}")
        return "\n".join(lines)


def histogram(scores: list[float], bins: int = 10, width: int = 40) -> list[str]:
    counts = [0] * bins
    for s in scores:
        counts[min(bins - 1, max(0, int((s + 1) / 2 * bins)))] += 1
    top = max(counts) or 1
    rows = []
    for i, count in enumerate(counts):
        low = -1 + 2 * i / bins
        rows.append(f"  [{low:+.1f}, {low + 2 / bins:+.1f}) {'#' * math.ceil(count / top * width) if count else '':<{width}} {count}")
    return rows


def _first_ctrl_c_sets(event: threading.Event) -> Callable[[], None]:
    """Until the returned function is called, the first Ctrl-C (SIGINT) sets `event` and says
    so; a second one raises KeyboardInterrupt as usual. Only the main thread can catch signals:
    elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_sigint(signum, frame):
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("neuron-interp batch: interrupted; finishing the latents in flight (Ctrl-C again to stop now)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    return lambda: signal.signal(signal.SIGINT, previous)


def run(
    latents: list[Latent],
    output: Output,
    transport: Any,
    options: Options,
    *,
    concurrency: int = 4,
    max_tokens: int | None = None,
    max_cost_usd: float | None = None,
    progress: Callable[[int], Any] | None = None,
) -> Summary:
    summary = Summary(total=len(latents))
    todo = [latent for latent in latents if latent.id not in output.done]
    summary.skipped = len(latents) - len(todo)
    bar = progress(len(todo)) if progress else None
    started = time.monotonic()

    def over_budget() -> str | None:
        if max_tokens is not None and summary.tokens >= max_tokens:
            return f"--max-tokens {max_tokens} reached"
        if max_cost_usd is not None and summary.cost_usd >= max_cost_usd:
            return f"--max-cost-usd {max_cost_usd} reached"
        if max_cost_usd is not None and summary.unpriced_tokens:
            # A cap the run cannot see is no cap: stop rather than spend without a limit.
            return (f"--max-cost-usd {max_cost_usd} cannot be kept: the service put no price on "
                    f"{summary.unpriced_tokens:,} tokens (set MODEL_PRICES for its models)")
        return None

    pending: dict[Future, Latent] = {}
    queue = iter(todo)
    interrupted = threading.Event()
    restore = _first_ctrl_c_sets(interrupted)
    try:
        with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="batch") as pool:
            exhausted = False
            while True:
                while not exhausted and len(pending) < max(1, concurrency):
                    reason = over_budget()
                    if reason:
                        summary.stopped_because = reason
                        exhausted = True
                        break
                    latent = next(queue, None)
                    if latent is None:
                        exhausted = True
                        break
                    pending[pool.submit(process, latent, transport, options)] = latent
                if not pending:
                    break
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                if interrupted.is_set() and not exhausted:
                    # Ctrl-C: start nothing more, but keep what is in flight (written as it finishes,
                    # so a rerun need not pay for it again); a second Ctrl-C stops at once.
                    summary.stopped_because = "interrupted"
                    exhausted = True
                for future in done:
                    latent = pending.pop(future)
                    try:
                        line = future.result()
                    except Transient as exc:
                        summary.retry_later += 1
                        summary.transient.append(f"{latent.id}: {exc}")
                    else:
                        output.write(line)
                        summary.add(line)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(tokens=f"{summary.tokens:,}", cost=f"${summary.cost_usd:.4f}", refresh=False)
    finally:
        restore()
    if bar is not None:
        bar.close()
    not_started = len(todo) - summary.written - summary.retry_later
    if not_started and summary.stopped_because == "done":
        summary.stopped_because = "interrupted"
    summary.retry_later += not_started
    summary.elapsed = time.monotonic() - started
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="a Neuronpedia/SAEDashboard export (JSON) or JSONL of latents")
    parser.add_argument("output", type=Path, help="JSONL, appended to; ids already there are skipped")
    parser.add_argument("--url", action="append", default=[], help="a service to send to (repeat to fan out)")
    parser.add_argument("--secret", default=os.environ.get("SERVER_KEY") or None, help="SERVER_KEY of the services")
    parser.add_argument("--explain", metavar="STYLE", help="explain every latent in this style, even those with an explanation")
    parser.add_argument("--simulator", help="the simulator that scores (the service's default when omitted)")
    parser.add_argument("--scorer", help="simulation, detection, fuzzing or embedding")
    parser.add_argument("--model", help="the model for an LLM explainer, simulator or judge")
    parser.add_argument("--explainer", choices=("offline", "openai"), help="who writes missing explanations")
    parser.add_argument("--concurrency", type=int, default=4, help="latents in flight at once (default 4)")
    parser.add_argument("--max-tokens", type=int, help="stop starting latents once this many LLM tokens are spent")
    parser.add_argument("--max-cost-usd", type=float, help="stop starting latents once this much is spent")
    parser.add_argument("--texts", type=int, default=20, help="export: top texts per latent (default 20)")
    parser.add_argument("--window", type=int, default=64, help="export: tokens per text, around its peak (default 64)")
    parser.add_argument("--random-texts", type=int, default=0, help="export: quantile texts per latent as random_activations")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        latents = read_latents(args.input, texts=args.texts, window=args.window, random_texts=args.random_texts)
        output = Output(args.output)
    except (OSError, InputError) as exc:
        print(f"neuron-interp batch: {exc}", file=sys.stderr)
        return 2
    transport = (
        HttpTransport(args.url, secret=args.secret, connections=args.concurrency) if args.url else InProcessTransport()
    )
    options = Options(args.explain, args.simulator, args.scorer, args.model, args.explainer)

    def progress(total: int):
        if args.quiet:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="latent", dynamic_ncols=True, file=sys.stderr)

    try:
        summary = run(
            latents,
            output,
            transport,
            options,
            concurrency=args.concurrency,
            max_tokens=args.max_tokens,
            max_cost_usd=args.max_cost_usd,
            progress=progress,
        )
    except KeyboardInterrupt:
        print("neuron-interp batch: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    finally:
        output.close()
    print(summary.render(), file=sys.stderr)
    if summary.stopped_because == "interrupted":
        return 130
    return 0 if summary.retry_later == 0 else 1
