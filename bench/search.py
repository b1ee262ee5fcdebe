"""Cost of a hypothesis search (POST /explain with strategy "search") against the loopback stub.

    python -m bench.search
    python -m bench.search --delay 0.3       # each stub answer takes 0.3 s: wall time with latency

The whole HTTP path runs in process (Flask test client -> the search -> OpenAIBackend -> the
stub over loopback HTTP). The stub reports tiktoken cl100k counts as `usage`, so the token
figures are those a real OpenAI-compatible server would bill for these prompts; only the
replies are scripted: the proposer answers 5 new "the text mentions <word>" hypotheses per
round, the judge answers "yes" iff the text contains the word (tests/search_responder.py).
No cache, so every judge answer is a call; the stub plays a provider's prefix cache (OpenAI's
rule: whole 128-token blocks from 1,024 on) and "cached" counts the prompt tokens it served.

(a) the default budget on the standard 20-text request (bench/workload.py standard_request(),
    20 texts x 64 tokens): as sent with defaults only, and with patience high enough that
    the whole budget of rounds is spent (the most a default search can cost);
(b) growth with the number of texts: 10 / 20 / 40 texts of 64 tokens, 4 rounds (feature 1 of
    the workload, the one with more than 40 texts), calls allowed up to the server's cap (300)
    so that the default 100 does not cut the 40-text search short;
(c) growth with rounds: 1 / 2 / 4 rounds on the standard 20-text request;
(d) what simulate_best adds (the batched simulator on the test texts).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.workload import standard_request
from llm.tokens import count_message_tokens
from runtime.settings import Settings
from server import create_app
from tests.search_responder import PROPOSER_MARK, SearchResponder, numbered
from tests.stub_openai import PrefixCache, StubOpenAI

ROOT = Path(__file__).resolve().parent.parent

# Words for the scripted proposals: the workload's feature 0 fires on " brigade" (and a
# little on " battalion"), so round 2's "brigade" is the improvement a real proposer finds.
VOCABULARY = (
    "army soldier war election campaign brigade battalion regiment reality university "
    "government party president police court city school money water game season player "
    "team family church music film book story health company market street house night "
    "train river mountain island bridge road office"
).split()
PER_ROUND = 5


def proposals(request, k: int) -> str:
    words = VOCABULARY[(k * PER_ROUND) % len(VOCABULARY):][:PER_ROUND]
    return numbered(*(f"the text mentions {w}" for w in words))


def run(activations: list[dict], delay: float, **options) -> dict:
    with StubOpenAI(SearchResponder(proposals), delay=delay, prefix_cache=PrefixCache()) as stub:
        settings = Settings(
            openai_base_url=stub.base_url,
            openai_api_key="sk-bench",
            simulator_model="stub-model",
            explainer_model="stub-model",
            cache_path="",
            offline_embeddings=False,
            request_timeout=600.0,
            log_level="WARNING",
            log_format="text",
        )
        client = create_app(settings).test_client()
        started = time.perf_counter()
        response = client.post("/explain", json={"activations": activations, "strategy": "search", **options})
        wall = time.perf_counter() - started
        body = response.get_json()
        if response.status_code != 200:
            raise SystemExit(f"search failed: {response.status_code} {body}")
        proposer_prompts = [
            count_message_tokens(r.messages)
            for r in stub.requests
            if any(PROPOSER_MARK in (m.get("content") or "") for m in r.messages if m.get("role") == "system")
        ]
        assert stub.calls() == body["usage"]["llm_calls"], "usage must count every call the stub saw"
    return {**body, "wall": wall, "proposer_prompts": proposer_prompts}


HEADER = (
    f"    {'case':<26}{'rounds':>7}{'hyp.':>6}{'calls':>7}{'(prop/judge)':>14}"
    f"{'prompt':>9}{'cached':>8}{'compl.':>8}{'total':>9}{'tok/hyp':>9}{'wall ms':>9}  stopped"
)


def row(label: str, body: dict) -> str:
    usage, steps = body["usage"], body["usage_by_step"]
    hypotheses = len(body["hypotheses"])
    split = f"{steps['proposer']['llm_calls']}/{steps['judge']['llm_calls']}"
    per = steps["judge"]["total_tokens"] / max(hypotheses, 1)
    return (
        f"    {label:<26}{body['rounds']:>7}{hypotheses:>6}{usage['llm_calls']:>7}{split:>14}"
        f"{usage['prompt_tokens']:>9}{usage.get('cached_prompt_tokens', 0):>8}"
        f"{usage['completion_tokens']:>8}{usage['total_tokens']:>9}"
        f"{per:>9.0f}{body['wall'] * 1000:>9.0f}  {body['stopped_because']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each stub answer")
    args = parser.parse_args()

    standard = standard_request()["activations"]
    n_tokens = sum(len(a["tokens"]) for a in standard)
    print(f"(a) default budget, standard request: {len(standard)} texts, {n_tokens} tokens; stub delay {args.delay * 1000:.0f} ms")
    print(HEADER)
    default = run(standard, args.delay)
    print(row("defaults only", default))
    full = run(standard, args.delay, patience=100)
    print(row("whole budget (patience off)", full))
    b = default["budget"]
    print(
        f"    budget: {b['max_rounds']} rounds x {b['hypotheses_per_round']} hypotheses, "
        f"{b['max_llm_calls']} calls, {b['max_tokens']} tokens; judge batch {default['judge']['batch_size']} texts"
    )
    print(f"    proposer prompt tokens by round: {full['proposer_prompts']} (grows with the hypotheses tried)")
    print(f"    best: {default['explanation']!r} r={default['hypotheses'][0]['correlation']:.3f}")

    # (b) and (c) measure growth, not the default budget: the calls go up to the server's cap.
    print("\n(b) growth with texts (64 tokens each, feature 1), 4 rounds, patience off, max_llm_calls 300")
    print(HEADER)
    for texts in (10, 20, 40):
        activations = standard_request(feature=1, texts=texts)["activations"]
        print(row(f"{len(activations)} texts", run(activations, args.delay, max_rounds=4, patience=100, max_llm_calls=300)))

    print("\n(c) growth with rounds, standard 20-text request, patience off, max_llm_calls 300")
    print(HEADER)
    for rounds in (1, 2, 4):
        print(row(f"{rounds} round(s)", run(standard, args.delay, max_rounds=rounds, patience=100, max_llm_calls=300)))

    print("\n(d) simulate_best on top of the default search (batched simulator, all texts)")
    with_sim = run(standard, args.delay, simulate_best=True)
    sim = with_sim["usage_by_step"]["simulation"]
    print(
        f"    simulation: {sim['llm_calls']} calls, {sim['total_tokens']} tokens "
        f"(score {with_sim['simulation_score']}); search total {with_sim['usage']['total_tokens']} tokens"
    )


if __name__ == "__main__":
    main()
