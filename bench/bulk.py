"""Bulk scoring: `neuron-interp batch` against scripts/stack with 1, 2 and 4 replicas.

    .venv/bin/python -m bench.bulk                       # about 4 minutes; writes "Bulk scoring" in bench/RESULTS.md
    .venv/bin/python -m bench.bulk --no-write --latents 60 --replicas 1,2

The input: a JSONL of `--latents` latents, copies of the 3 non-zero latents of
../shared/data/neuronpedia-gpt2-small-res-jb (20 texts x 64 tokens each, cut as `batch`
cuts an export). Each copy has its own id, and one token that carries no activation in each
of its texts is replaced by a marker of the copy (" copy17"), so that no two latents send
the same prompt: in a real dictionary every latent has its own texts, and identical copies
would all be cache hits after the first.

(a) Throughput. For each replica count, scripts/stack (nginx, REPLICAS gunicorn replicas of
    WEB_CONCURRENCY=2 x GUNICORN_THREADS=8, Redis) is started against the loopback
    OpenAI-compatible stub (tests/stub_openai.py), and `neuron-interp batch INPUT OUT --url
    http://127.0.0.1:PORT --concurrency (8 x replicas)` runs twice: with the service's LLM
    defaults (the stub writes the explanation from the prompt's highly activating tokens,
    then the `batched` simulator scores; every call waits `--delay` s), and offline
    (`--explainer offline --simulator offline`, CPU only). Each run: latents per minute from
    the command's own summary, LLM calls the stub saw, and the CPU seconds of every part
    (replicas, nginx, Redis, the batch command, this process, which runs the stub), read from
    /proc, with how busy the whole machine was.
(b) Cache across replicas. On the last stack, the same input again into a fresh OUTPUT:
    LLM calls the stub saw against the first run's, and which replicas answered (nginx's
    access log).
(c) Tokens per 1,000 latents, from the `usage` of the output lines: explaining alone
    (the stub explainer, offline simulator), then scoring alone with the `batched` and the
    `json` simulator (the explanations of the first run given in the input), in process
    (`batch` without `--url`), no cache, stub without delay.
(d) On paper: 1,000,000 latents, from the measured tokens and calls per latent and the
    stated assumptions (list prices, latency per call, calls in flight at the backend).

Nothing here is tuned to the workload; the stub answers from a keyword rule, so completion
tokens are the stub's, not a model's.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from cli.inputs import read_latents
from tests.stub_openai import SimulationResponder, StubOpenAI, chat_body

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
EXPORT = SHARED_DATA / "neuronpedia-gpt2-small-res-jb"
BIN = Path(sys.executable).with_name("neuron-interp")
SECTION = "## Bulk scoring (issue: past one process)"
TICK = os.sysconf("SC_CLK_TCK")
EXPLAINER_MARK = "We study the units of a language model"
PRICES = {"gpt-4o-mini": (0.15, 0.60)}  # USD per million input / output tokens: list prices, an assumption


# -- the input ---------------------------------------------------------------------------


def base_latents() -> list:
    latents = read_latents(EXPORT, texts=20, window=64)
    return [latent for latent in latents if any(max(t["values"]) > 0 for t in latent.activations)]


def marked(text: dict, copy: int) -> dict:
    """The text with its first zero-activation token replaced by the copy's marker."""
    tokens = list(text["tokens"])
    values = text["values"]
    where = next((i for i, v in enumerate(values) if v == 0), 0)
    tokens[where] = f" copy{copy}"
    return {"tokens": tokens, "values": list(values)}


MARKER_OFFSET = {"": 0, "second-": 100000, "warm-": 200000}  # the inputs' markers never meet


def write_input(path: Path, count: int, *, tag: str = "", explanations: dict[str, str] | None = None) -> None:
    bases = base_latents()
    with open(path, "w", encoding="utf-8") as f:
        for k in range(count):
            base, copy = bases[k % len(bases)], k // len(bases)
            item: dict = {
                "id": f"{base.id}#{tag}{copy}",
                "activations": [marked(t, MARKER_OFFSET[tag] + copy) for t in base.activations],
            }
            if explanations is not None:
                item["explanation"] = explanations[item["id"]]
            f.write(json.dumps(item) + "\n")


# -- the stub: explanations too ----------------------------------------------------------


def is_explainer(request) -> bool:
    system = next((m.get("content") or "" for m in request.messages if m.get("role") == "system"), "")
    return request.is_chat and system.startswith(EXPLAINER_MARK)


class ExplainerResponder:
    """The explainer's prompts get "the tokens A, B, C" (the first three tokens of the prompt's
    last "Highly activating tokens:" line); every other prompt goes to the simulation stub."""

    def __init__(self) -> None:
        self.simulate = SimulationResponder()

    def __call__(self, request):
        if is_explainer(request):
            listed = re.findall(r"^Highly activating tokens: (.*)$", request.last_user_message, re.MULTILINE)
            names = []
            for item in (listed[-1].split(", ") if listed else []):
                name = re.sub(r" \(\d+\)$", "", item).strip()
                if re.search(r"[A-Za-z0-9]", name) and name not in names:
                    names.append(name)
            return chat_body(request, "the tokens " + ", ".join(names[:3]) if names else "no clear pattern")
        return self.simulate(request)


# -- CPU, from /proc -------------------------------------------------------------------------


def group_cpu(groups: set[int]) -> float:
    """CPU seconds (user + system) of the live processes of these process groups."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, all cores."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# -- scripts/stack ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    def __init__(self, replicas: int, env: dict, log: Path) -> None:
        self.replicas = replicas
        self.port = free_port()
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.log = open(log, "ab")
        env = {**env, "REPLICAS": str(replicas), "STACK_PORT": str(self.port)}
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "stack")], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=self.log, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 180
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("scripts/stack did not start:\n" + "\n".join(self.lines[-20:]) + f"\n(see {log})")

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if line.startswith("stack: ready"):
                self.ready.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self, pattern: str) -> set[int]:
        return {int(m[1]) for line in list(self.lines) if (m := re.match(pattern, line))}

    def groups(self) -> dict[str, set[int]]:
        return {
            "replicas": self.pids(r"stack: replica \d+ \S+ \(pid (\d+)\)"),
            "nginx": self.pids(r"stack: nginx .*\(pid (\d+)"),
            "redis": self.pids(r"stack: redis .*\(pid (\d+)"),
        }

    def redis_memory(self) -> tuple[int, int]:
        """Redis's used_memory in bytes and the cache's entries (db 0)."""
        import redis

        (port,) = self.pids(r"stack: redis +redis://127\.0\.0\.1:(\d+)")
        client = redis.Redis(host="127.0.0.1", port=port, db=0)
        try:
            return int(client.info("memory")["used_memory"]), int(client.dbsize())
        finally:
            client.close()

    def upstreams(self, since: int) -> Counter:
        """Requests per replica address in nginx's access log, from line `since` on."""
        counts: Counter = Counter()
        for line in self.lines[since:]:
            if line.startswith("{"):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("uri", "").startswith(("/score", "/explain")) or entry.get("upstream"):
                    counts[entry.get("upstream", "?")] += 1
        return counts

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()


# -- one run of `neuron-interp batch` ----------------------------------------------------------


@dataclass
class Run:
    label: str
    latents: int = 0
    errors: int = 0
    elapsed: float = 0.0  # the command's own figure: its run, without its start-up
    llm_calls_seen: int = 0  # by the stub
    explain_calls_seen: int = 0  # of which the explainer's
    usage: dict = field(default_factory=dict)
    cpu: dict = field(default_factory=dict)  # part -> CPU seconds
    busy: float = 0.0  # the machine's busy fraction over the run (every process, anyone's)
    summary: str = ""
    lines: list = field(default_factory=list)
    upstreams: Counter = field(default_factory=Counter)

    @property
    def per_minute(self) -> float:
        if self.elapsed <= 0:
            raise RuntimeError(f"{self.label}: the run was too short to time ({self.elapsed} s)")
        return self.latents / self.elapsed * 60

    def tokens(self, kind: str) -> int:
        return int(self.usage.get(kind, 0))

    def per_latent(self, kind: str) -> float:
        return self.tokens(kind) / max(self.latents, 1)


def batch(label: str, source: Path, output: Path, *, env: dict, stub: StubOpenAI, urls: list[str] = (),
          concurrency: int = 4, extra: list[str] = (), stack: Stack | None = None) -> Run:
    command = [str(BIN), "batch", str(source), str(output), "--concurrency", str(concurrency), "--quiet", *extra]
    for url in urls:
        command += ["--url", url]
    groups = stack.groups() if stack else {}
    cpu_before = {part: group_cpu(g) for part, g in groups.items()}
    bench_before = time.process_time()
    busy_before, total_before = machine_cpu()
    calls_before = stub.calls()
    log_from = len(stack.lines) if stack else 0
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        _, status, rusage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        summary = err.read().decode("utf-8", "replace")
    busy_after, total_after = machine_cpu()
    run = Run(label, summary=summary.strip())
    run.cpu = {part: group_cpu(g) - cpu_before[part] for part, g in groups.items()}
    run.cpu["batch command"] = rusage.ru_utime + rusage.ru_stime
    run.cpu["this process (stub)"] = time.process_time() - bench_before
    run.busy = (busy_after - busy_before) / max(total_after - total_before, 1)
    run.llm_calls_seen = stub.calls() - calls_before
    run.explain_calls_seen = sum(1 for request in stub.requests[calls_before:] if is_explainer(request))
    if process.returncode != 0:
        raise RuntimeError(f"{label}: neuron-interp batch exited with {process.returncode}:\n{summary[-3000:]}")
    match = re.search(r"; ([\d.]+) s; stopped: (.*)$", summary, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{label}: the batch command printed no summary line:\n{summary[-3000:]}")
    run.elapsed = float(match[1])
    run.lines = [json.loads(raw) for raw in output.read_text(encoding="utf-8").splitlines() if raw.strip()]
    run.latents = len(run.lines)
    run.errors = sum(1 for line in run.lines if line.get("error"))
    for line in run.lines:
        for key, value in (line.get("usage") or {}).items():
            run.usage[key] = run.usage.get(key, 0) + value
    if stack:
        time.sleep(0.3)  # nginx's last access-log lines
        run.upstreams = stack.upstreams(log_from)
    return run


# -- the whole benchmark ----------------------------------------------------------------------


def service_env(stub: StubOpenAI) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CACHE_", "RATELIMIT_"))}
    for key in ("SERVER_KEY", "RATE_LIMIT", "SIMULATOR", "EXPLAINER_BACKEND", "LLM_BACKEND", "BIND"):
        env.pop(key, None)
    env.update(
        OPENAI_BASE_URL=stub.base_url,
        OPENAI_API_KEY="sk-bench-bulk",
        MODEL_PRICES=",".join(f"{m}={i}/{o}" for m, (i, o) in PRICES.items()),
        WEB_CONCURRENCY="2",
        GUNICORN_THREADS="8",
        LOG_LEVEL="WARNING",
        STACK_ACCESS_LOG="/dev/stdout stack",
    )
    return env


def measure(args: argparse.Namespace, tmp: Path) -> dict:
    source = tmp / "latents.jsonl"
    write_input(source, args.latents)
    second = tmp / "latents-second.jsonl"  # the same latents, other markers: a second measurement
    write_input(second, args.latents, tag="second-")
    warm = tmp / "warm.jsonl"
    results: dict = {"throughput": [], "repeat": None, "formats": {}, "redis": None}
    with StubOpenAI(ExplainerResponder(), delay=args.delay) as stub:
        env = service_env(stub)
        for n in args.replicas:
            print(f"stack with {n} replica(s): starting", flush=True)
            stack = Stack(n, env, tmp / "stack.log")
            try:
                concurrency = args.per_replica * n
                redis_before = stack.redis_memory()
                # Every worker's first requests (imports, the offline model) are not measured.
                write_input(warm, 8 * n * 2, tag="warm-")
                for mode, extra in (("llm", []), ("offline", ["--explainer", "offline", "--simulator", "offline"])):
                    batch(f"warm {mode}", warm, tmp / f"warm-{n}-{mode}.jsonl", env=env, stub=stub,
                          urls=[stack.url], concurrency=concurrency, extra=extra, stack=stack)
                firsts = {}
                for mode, extra in (("llm", []), ("offline", ["--explainer", "offline", "--simulator", "offline"])):
                    for take, path in enumerate((source, second), start=1):
                        run = batch(f"{n} replica(s), {mode}, run {take}", path, tmp / f"out-{n}-{mode}-{take}.jsonl",
                                    env=env, stub=stub, urls=[stack.url], concurrency=concurrency, extra=extra,
                                    stack=stack)
                        run.replicas, run.mode, run.concurrency = n, mode, concurrency
                        results["throughput"].append(run)
                        firsts.setdefault(mode, run)
                        show_run(run)
                if n == args.replicas[-1]:
                    first = firsts["llm"]
                    used, entries = stack.redis_memory()
                    scored = sum(run.latents for run in results["throughput"] if run.replicas == n and run.mode == "llm")
                    results["redis"] = {"bytes": used - redis_before[0], "entries": entries - redis_before[1],
                                        "latents": scored + 8 * n * 2}
                    again = batch(f"{n} replica(s), llm, again", source, tmp / f"out-{n}-llm-again.jsonl", env=env,
                                  stub=stub, urls=[stack.url], concurrency=concurrency, stack=stack)
                    again.replicas, again.first = n, first
                    results["repeat"] = again
                    show_run(again)
            finally:
                stack.stop()
                print(f"stack with {n} replica(s): stopped", flush=True)
                logged = (tmp / "stack.log").read_text(encoding="utf-8", errors="replace").splitlines()
                worse = [line for line in logged if '"level": "WARNING"' in line or '"level": "ERROR"' in line
                         or not line.startswith("{")]
                print(f"  the stack's standard error: {len(logged)} lines, {len(worse)} warnings, errors or other lines", flush=True)
                for line in worse[:5]:
                    print(f"    {line[:300]}", flush=True)
                (tmp / "stack.log").unlink()

        # (c) tokens per latent by format, in process, no cache, no delay.
        stub.delay = 0.0
        local = {**env, "CACHE_PATH": "", "EXPLAINER_BACKEND": "openai"}
        few = tmp / "few.jsonl"
        write_input(few, args.format_latents)
        explained = batch("explain only", few, tmp / "fmt-explain.jsonl", env=local, stub=stub,
                          extra=["--simulator", "offline"])
        results["formats"]["explain"] = explained
        show_run(explained)
        given = tmp / "few-explained.jsonl"
        write_input(given, args.format_latents, explanations={line["id"]: line["explanation"] for line in explained.lines})
        for simulator in ("batched", "json"):
            run = batch(f"score only, {simulator}", given, tmp / f"fmt-{simulator}.jsonl", env=local, stub=stub,
                        extra=["--simulator", simulator])
            results["formats"][simulator] = run
            show_run(run)
    return results


def show_run(run: Run) -> None:
    cpu = ", ".join(f"{part} {seconds:.1f}" for part, seconds in run.cpu.items())
    print(
        f"  {run.label}: {run.latents} latents ({run.errors} refused) in {run.elapsed:.1f} s = "
        f"{run.per_minute:,.0f}/min; stub saw {run.llm_calls_seen} LLM calls ({run.explain_calls_seen} explain); tokens "
        f"{run.tokens('prompt_tokens'):,} + {run.tokens('completion_tokens'):,}; "
        f"CPU s: {cpu}; machine busy {run.busy:.0%}",
        flush=True,
    )
    if run.upstreams:
        print(f"    requests per replica: {dict(run.upstreams)}", flush=True)
    warnings = [line for line in run.summary.splitlines() if "WARNING" in line or "Traceback" in line]
    if warnings:
        print(f"    the batch command warned {len(warnings)} time(s), first: {warnings[0][:300]}", flush=True)


# -- the report ---------------------------------------------------------------------------------


def report(args: argparse.Namespace, results: dict) -> str:
    runs = results["throughput"]
    ideal_per_replica = args.per_replica * 60 / (2 * args.delay)  # explain, then score: two calls' waits
    out = []
    out.append(f"{SECTION}\n")
    out.append(
        f"`.venv/bin/python -m bench.bulk` ({args.latents} latents: copies of the 3 non-zero latents of the "
        f"res-jb export, 20 texts x 64 tokens each, one marker token per text so that no two copies send the "
        f"same prompt; stub delay {args.delay * 1000:.0f} ms per call; `neuron-interp batch INPUT OUT --url "
        f"http://127.0.0.1:PORT --concurrency {args.per_replica}xREPLICAS` through nginx of `REPLICAS=n "
        f"scripts/stack`, each replica 2 workers x 8 threads, one Redis)\n"
    )
    out.append(
        "LLM: the service's defaults with an LLM (the stub writes each explanation, one call; the `batched` "
        "simulator scores, two calls of 10 texts in parallel). Offline: `--explainer offline --simulator "
        "offline`. CPU seconds per latent of each part, from /proc; \"machine busy\" is both cores over the "
        "run, every process on the machine included (it is shared).\n"
    )
    out.append("| replicas | mode | latents/min, two runs | x 1 replica | LLM calls per run | CPU ms/latent: replicas / nginx / redis / batch / stub | 2-core ceiling | machine busy |")
    out.append("|---|---|---|---|---|---|---|---|")
    groups = pairs(runs)
    base = {mode: rate(group) for (replicas, mode), group in groups.items() if replicas == args.replicas[0]}
    for (replicas, mode), group in groups.items():
        cpu = " / ".join(
            f"{sum(run.cpu.get(part, 0) for run in group) / max(sum(run.latents for run in group), 1) * 1000:.0f}"
            for part in ("replicas", "nginx", "redis", "batch command", "this process (stub)")
        )
        ideal = f" (the calls' waits alone allow {ideal_per_replica * replicas:,.0f})" if mode == "llm" else ""
        each = " and ".join(f"{run.per_minute:,.0f}" for run in group)
        out.append(
            f"| {replicas} | {mode} | {each}{ideal} | {rate(group) / base[mode]:.2f}x "
            f"| {sum(run.llm_calls_seen for run in group) // len(group):,} | {cpu} "
            f"| {sum(map(ceiling, group)) / len(group):,.0f} | {' and '.join(f'{run.busy:.0%}' for run in group)} |"
        )
    out.append("")
    out.append(
        "\"2-core ceiling\": latents per minute if both cores did nothing but this run's processes "
        "(120 CPU-seconds a minute over the CPU per latent of every part, the stub included).\n"
    )
    out.append(reading(args, runs, ideal_per_replica))
    again = results["repeat"]
    if again is not None:
        first = again.first
        hits = 1 - again.llm_calls_seen / max(first.llm_calls_seen, 1)
        first_score = first.llm_calls_seen - first.explain_calls_seen
        again_score = again.llm_calls_seen - again.explain_calls_seen
        spread = " / ".join(f"{count}" for _, count in sorted(again.upstreams.items()))
        out.append(
            f"Cache across replicas: the same {again.latents} latents again into a fresh OUTPUT, against the "
            f"{again.replicas}-replica stack (its Redis holding the first run's answers):\n"
        )
        out.append("| run | LLM calls the stub saw | scoring calls | explainer calls | cache hits (output lines) | latents/min |")
        out.append("|---|---|---|---|---|---|")
        for name, run in (("first", first), ("again", again)):
            out.append(
                f"| {name} | {run.llm_calls_seen:,} | {run.llm_calls_seen - run.explain_calls_seen:,} "
                f"| {run.explain_calls_seen:,} | {run.usage.get('cache_hits', 0):,} | {run.per_minute:,.0f} |"
            )
        out.append("")
        repeats = sum(len(latent.activations) - len({json.dumps(t["tokens"]) for t in latent.activations})
                      for latent in base_latents())
        early = first.usage.get("cache_hits", 0)
        out.append(
            (f"The first run's cache hit(s), {early:,}: the export repeats some texts within a latent's top 20 "
             f"({repeats} repeats over the 3 latents), which is where they can come from; not traced further. "
             if early else "")
            + f"Scoring calls: {1 - again_score / max(first_score, 1):.1%} served from the cache; all calls: "
            f"{hits:.1%}. The explainer's calls are not cached (it gets no cache from `runtime/root.py`, and "
            f"samples at temperature 1.0 by default), so each run into a fresh OUTPUT pays for its explanations "
            f"again: resuming into the same OUTPUT, which skips the latents already written, is what avoids "
            f"paying twice. nginx spread the second run's requests over the replicas {spread}, round robin, "
            f"so most scoring answers were served by another replica than the one that paid for them.\n"
        )
    memory = results["redis"]
    if memory and memory["entries"]:
        per_entry = memory["bytes"] / memory["entries"]
        per_latent = memory["bytes"] / memory["latents"]
        out.append(
            f"Redis's memory: {memory['entries']:,} cache entries (one per distinct scored text and explanation) for the "
            f"{memory['latents']:,} LLM-scored latents of that stack, {memory['bytes'] / 1e6:.1f} MB more "
            f"`used_memory` than at its start: {per_entry:,.0f} bytes an entry, {per_latent / 1e3:,.1f} kB a "
            f"latent of 20 texts. Keeping every answer of 1,000,000 latents would take about "
            f"{per_latent * 1e6 / 1e9:,.0f} GB; the stack's default `REDIS_MAXMEMORY=256mb` keeps the "
            f"{256e6 / per_latent:,.0f} most recently used latents' answers (allkeys-lru), which a bulk run "
            f"needs only for reruns into a fresh OUTPUT.\n"
        )
    formats = results["formats"]
    explain = formats["explain"]
    out.append(
        f"Tokens per 1,000 latents, from the output lines' `usage` ({explain.latents} latents in process, "
        f"no cache; tiktoken cl100k counts of the exact prompts and of the stub's answers):\n"
    )
    out.append("| step | LLM calls / latent | prompt tokens | completion tokens | total | cost at gpt-4o-mini list prices |")
    out.append("|---|---|---|---|---|---|")
    rows = [("explain (`original` style, 5 texts shown)", explain),
            ("score, `batched` (default)", formats["batched"]),
            ("score, `json`", formats["json"])]
    for name, run in rows:
        p, c = run.per_latent("prompt_tokens") * 1000, run.per_latent("completion_tokens") * 1000
        out.append(
            f"| {name} | {run.usage.get('llm_calls', 0) / max(run.latents, 1):.1f} | {p:,.0f} | {c:,.0f} "
            f"| {p + c:,.0f} | ${cost(p, c):.3f} |"
        )
    out.append("")
    out.append(paper(args, results))
    return "\n".join(out).rstrip() + "\n"


def pairs(runs: list[Run]) -> dict[tuple[int, str], list[Run]]:
    groups: dict[tuple[int, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.replicas, run.mode), []).append(run)
    return groups


def rate(group: list[Run]) -> float:
    """Latents per minute over the runs of a group, together."""
    return sum(run.latents for run in group) / sum(run.elapsed for run in group) * 60


def spread(group: list[Run]) -> float:
    rates = [run.per_minute for run in group]
    return (max(rates) - min(rates)) / min(rates)


def ceiling(run: Run) -> float:
    per_latent = sum(run.cpu.values()) / max(run.latents, 1)
    if not per_latent:
        raise RuntimeError(f"{run.label}: no CPU time was measured")
    return 120 / per_latent


def reading(args: argparse.Namespace, runs: list[Run], ideal_per_replica: float) -> str:
    """What the table says, in words computed from it."""
    text = []
    groups = pairs(runs)
    llm = {replicas: group for (replicas, mode), group in groups.items() if mode == "llm"}
    if llm:
        steps = []
        for replicas, group in llm.items():
            # Little's law: latents in flight / latents per second = seconds each latent took.
            seconds = args.per_replica * replicas / (rate(group) / 60)
            busy = sum(run.busy for run in group) / len(group)
            steps.append(
                f"{replicas} replica(s): {rate(group) / (ideal_per_replica * replicas):.0%} of what the calls' "
                f"waits allow, {seconds:.2f} s per latent in flight against {2 * args.delay:g} s of waits, "
                f"the machine {busy:.0%} busy"
            )
        last = llm[max(llm)]
        busy = sum(run.busy for run in last) / len(last)
        if busy >= 0.9:
            limit = (f"at {max(llm)} replicas the machine was {busy:.0%} busy: there the 2 cores, not the stub's "
                     f"delay, are the limit")
        else:
            limit = f"at {max(llm)} replicas the machine was still only {busy:.0%} busy"
        stub_share = sum(run.cpu.get("this process (stub)", 0) for run in last) / max(
            sum(sum(run.cpu.values()) for run in last), 1e-9)
        stub_cores = sum(run.cpu.get("this process (stub)", 0) for run in last) / sum(run.elapsed for run in last)
        text.append(
            f"LLM: {'; '.join(steps)}. Throughput grows near-linearly while cores are idle and stops as they "
            f"fill; {limit}. Every part shares the 2 cores, the stub among them ({stub_share:.0%} of the CPU at "
            f"{max(llm)} replicas; a hosted model's CPU is not on this machine). The stub itself, one Python "
            f"process, used {stub_cores:.2f} of a core there, so it was not what stopped the growth. A latent in flight holds one "
            f"thread of a replica and mostly waits on the backend: with a real model's latency (seconds, not "
            f"{args.delay:g} s) the same CPU serves many more latents in flight, and the backend's concurrency "
            f"becomes the limit (below)."
        )
    offline = {replicas: group for (replicas, mode), group in groups.items() if mode == "offline"}
    if offline:
        first = offline[min(offline)]
        busy = sum(run.busy for run in first) / len(first)
        per_latent = sum(run.cpu.get("replicas", 0) for run in first) / max(sum(run.latents for run in first), 1)
        text.append(
            f"Offline: CPU-bound from the first replica (the machine {busy:.0%} busy: its 2 workers use both "
            f"cores), so more replicas on this machine have no idle core to use (the table: "
            f"{', '.join(f'{rate(group) / rate(first):.2f}x' for r, group in offline.items() if r != min(offline))}; "
            f"the two runs at {min(offline)} replica(s) differ by {spread(first):.0%} themselves: runs of a few "
            f"seconds on a machine shared with other work). Replicas help offline work only on more "
            f"cores or more machines. The copies share their texts (one marker word apart), so the offline "
            f"simulator's word caches are warm here: {per_latent * 1000:.0f} ms of the replicas' CPU per latent, "
            f"explaining and scoring together; a dictionary of new texts takes the cold path, 35-48 ms of CPU per "
            f"20 x 64 score alone (the offline simulator's table above)."
        )
    return "\n\n".join(text) + "\n"


def cost(prompt_tokens: float, completion_tokens: float) -> float:
    inp, outp = PRICES["gpt-4o-mini"]
    return (prompt_tokens * inp + completion_tokens * outp) / 1e6


def paper(args: argparse.Namespace, results: dict) -> str:
    formats = results["formats"]
    explain, batched, json_run = formats["explain"], formats["batched"], formats["json"]
    n = 1_000_000
    latency, levels = args.call_latency, args.backend_concurrency
    lines = ["### 1,000,000 latents, on paper\n"]
    lines.append(
        f"Assumptions, not measurements: gpt-4o-mini at its list prices of ${PRICES['gpt-4o-mini'][0]:.2f} "
        f"per million input and ${PRICES['gpt-4o-mini'][1]:.2f} per million output tokens (no batch-API "
        f"discount, no cached-input discount); {latency:g} s per LLM call (the stub answers in "
        f"{args.delay:g} s; a hosted model's latency at these prompt sizes is not measured here); "
        f"{' or '.join(map(str, levels))} calls in flight at the backend. Measured: the tokens and calls per "
        f"latent above; the replicas' CPU per latent in the table above.\n"
    )
    lines.append("| pipeline | calls | input tokens | output tokens | cost | calls in flight | hours "
                 "| latents in flight | replicas (2 x 8 threads) |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    llm_runs = [run for run in results["throughput"] if run.mode == "llm"]
    explain_calls = explain.usage.get("llm_calls", 0) / max(explain.latents, 1)
    for name, score in (("explain + score `batched`", batched), ("explain + score `json`", json_run)):
        score_calls = score.usage.get("llm_calls", 0) / max(score.latents, 1)
        calls = explain_calls + score_calls
        p = (explain.per_latent("prompt_tokens") + score.per_latent("prompt_tokens")) * n
        c = (explain.per_latent("completion_tokens") + score.per_latent("completion_tokens")) * n
        # A latent holds one call while explained, then its score's calls at once (up to
        # LLM_CONCURRENCY=8): calls in flight per latent in flight, averaged over its time.
        rounds = math.ceil(score_calls / min(score_calls, 8))
        per_latent_inflight = (explain_calls + score_calls) / (1 + rounds)
        for inflight in levels:
            hours = n * calls * latency / inflight / 3600
            latents_inflight = inflight / per_latent_inflight
            lines.append(
                f"| {name} | {calls * n / 1e6:.0f} M | {p / 1e9:.2f} B | {c / 1e9:.3f} B | ${cost(p, c):,.0f} "
                f"| {inflight} | {hours:,.1f} | {latents_inflight:,.0f} | {math.ceil(latents_inflight / 16)} |"
            )
    lines.append("")
    lines.append(
        "A latent in flight is one request at a time on one replica thread (`batch --concurrency` = latents in "
        "flight); 16 threads a replica (the defaults, 2 workers x 8).\n"
    )
    if llm_runs:
        parts = ("replicas", "nginx", "redis", "batch command")
        cpu = max(sum(run.cpu.get(part, 0) for part in parts) / max(run.latents, 1) for run in llm_runs)
        tokens = (explain.per_latent("prompt_tokens") + explain.per_latent("completion_tokens")
                  + batched.per_latent("prompt_tokens") + batched.per_latent("completion_tokens"))
        calls = explain_calls + batched.usage.get("llm_calls", 0) / max(batched.latents, 1)
        for inflight in levels:
            rate = inflight / (calls * latency)
            lines.append(
                f"With `batched` at {inflight} calls in flight: {rate:.1f} latents/s ({rate * 60:,.0f}/min). The "
                f"CPU of the replicas, nginx, Redis and the batch command, at most {cpu * 1000:.0f} ms per latent "
                f"above, comes to {rate * cpu:.2f} cores at that rate: the replicas are counted by threads, the "
                f"cores by this figure. The backend must allow {tokens * rate * 60 / 1e6:.1f} M tokens and "
                f"{rate * 60 * calls:,.0f} requests per minute (a provider's rate limits are not modelled here).\n"
            )
    offline = [run for run in results["throughput"] if run.mode == "offline"]
    if offline:
        cpu = min(sum(run.cpu.get(p, 0) for p in ("replicas", "nginx", "redis")) / max(run.latents, 1) for run in offline)
        lines.append(
            f"Offline (no LLM, no cost): the stack spent at least {cpu * 1000:.0f} ms of CPU per latent above "
            f"(replicas, nginx and Redis, with the warm word caches of these copies), so 1,000,000 latents are about {cpu * n / 3600:,.0f} core-hours: "
            f"{cpu * n / 3600 / 2:,.0f} hours on this 2-core machine, and the client's CPU on top; new texts "
            f"take the cold path, a few times that.\n"
        )
    return "\n".join(lines)


def write(text: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    current = path.read_text(encoding="utf-8")
    if SECTION in current:
        head, _, tail = current.partition(SECTION)
        rest = tail.split("\n## ", 1)
        tail = ("\n\n## " + rest[1]) if len(rest) > 1 else ""
        current = head.rstrip() + "\n\n" + text.rstrip() + "\n" + tail
    else:
        current = current.rstrip() + "\n\n" + text
    path.write_text(current, encoding="utf-8")
    print(f"written to {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latents", type=int, default=360, help="latents in the input (default 360)")
    parser.add_argument("--replicas", default="1,2,4", help="replica counts, in order (default 1,2,4)")
    parser.add_argument("--per-replica", type=int, default=8, help="latents in flight per replica (default 8)")
    parser.add_argument("--delay", type=float, default=0.3, help="the stub's seconds per call (default 0.3)")
    parser.add_argument("--format-latents", type=int, default=30, help="latents for the token counts (default 30)")
    parser.add_argument("--call-latency", type=float, default=2.0, help="on paper: seconds per LLM call (default 2)")
    parser.add_argument("--backend-concurrency", default="64,256", help="on paper: calls in flight (default 64,256)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    args.replicas = [int(r) for r in args.replicas.split(",")]
    args.backend_concurrency = [int(k) for k in args.backend_concurrency.split(",")]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        results = measure(args, Path(tmp))
    text = report(args, results)
    print()
    print(text)
    print(f"(the whole benchmark took {time.monotonic() - started:.0f} s)")
    if not args.no_write:
        write(text)


if __name__ == "__main__":
    main()
