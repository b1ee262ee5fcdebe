"""`POST /explain` with `strategy: "search"`: a validated request in, the response body out.

This is the wiring: the budget (the request's numbers, capped by the server's), the proposer
and judge (an LLM's when one is configured, else the offline ones), the loop, the ranking,
and optionally a simulation score for the best hypothesis. The view calls `explain_by_search`
and adds nothing but timing; nothing here imports Flask.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from explainer.errors import ExplainerError
from explainer.explain import OFFLINE
from explainer.records import ActivationRecord, neuron_max, select_top
from explainer.search.loop import Budget, SearchResult, calls_per_evaluation, run_search
from explainer.search.offline import OfflineProposer
from explainer.search.propose import (
    DEFAULT_CONTRAST_K,
    Cost,
    Deduplicator,
    LLMProposer,
    select_contrast,
)
from explainer.search.report import ALPHA, CORRECTION, P_VALUE_TEST, rank_hypotheses
from explainer.search.splits import DEFAULT_SEED, split_texts
from llm.errors import LLMError
from llm.tokens import count_message_tokens
from llm.usage import Usage
from scorer.judge import DETECTION, LLMJudge, OfflineJudge, build_messages, render_text
from scorer.records import to_records
from scorer.scorers.simulation import score_explanation

# The budget a request gets when it names none; each is also capped by the server's
# SEARCH_MAX_* setting. 4 rounds of 5 hypotheses on 20 texts take 84 calls.
DEFAULT_MAX_ROUNDS = 4
DEFAULT_MAX_LLM_CALLS = 100
DEFAULT_MAX_TOKENS = 150_000
DEFAULT_HYPOTHESES_PER_ROUND = 5
DEFAULT_PATIENCE = 2
JUDGE_BATCH_SIZE = 5  # texts per judge prompt (delphi's number)
_CONDITION_TOKENS = 30  # a typical hypothesis, for the first evaluation's forecast


@dataclass(frozen=True)
class SearchBudget:
    max_rounds: int
    max_llm_calls: int
    max_tokens: int
    hypotheses_per_round: int
    patience: int
    capped: bool  # the request asked for more than the server allows

    @classmethod
    def from_request(cls, req: Any, settings: Any) -> "SearchBudget":
        asked = {
            "max_rounds": req.max_rounds or DEFAULT_MAX_ROUNDS,
            "max_llm_calls": req.max_llm_calls or DEFAULT_MAX_LLM_CALLS,
            "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
        }
        caps = {
            "max_rounds": settings.search_max_rounds,
            "max_llm_calls": settings.search_max_llm_calls,
            "max_tokens": settings.search_max_tokens,
        }
        if caps["max_rounds"] < 1:
            raise ExplainerError("strategy 'search' is disabled on this server (SEARCH_MAX_ROUNDS=0)")
        explicit = {k for k in asked if getattr(req, k) is not None}
        capped = any(asked[k] > caps[k] for k in explicit)
        return cls(
            **{k: min(asked[k], caps[k]) for k in asked},
            hypotheses_per_round=req.hypotheses_per_round or DEFAULT_HYPOTHESES_PER_ROUND,
            patience=req.patience or DEFAULT_PATIENCE,
            capped=capped,
        )


def judge_forecast(texts: Sequence[Sequence[str]], batch_size: int) -> Cost:
    """One evaluation's cost before any was measured: the judge's batches, their prompts counted
    with a typical condition, and each batch's completion cap."""
    rendered = [render_text(t) for t in texts]
    tokens = 0
    for start in range(0, len(rendered), batch_size):
        batch = rendered[start : start + batch_size]
        tokens += count_message_tokens(build_messages(DETECTION, "", batch))
        tokens += _CONDITION_TOKENS + 8 * len(batch) + 16
    return Cost(calls_per_evaluation(len(texts), batch_size), tokens)


def explain_by_search(req: Any, runtime: Any, *, deadline: float | None) -> dict:
    """The /explain response for `strategy: "search"` (`req` is api.ExplainRequest).

    Raises ExplainerError for what the request asks wrongly (HTTP 400), and the LLM errors
    that come before any hypothesis was evaluated (502/503/504).
    """
    settings = runtime.settings
    if req.n != 1 or req.score:
        raise ExplainerError(
            "n and score belong to strategy 'single'; the search ranks its own hypotheses "
            "(use simulate_best for a simulation score)"
        )
    budget = SearchBudget.from_request(req, settings)
    # Every text is judged: the top texts, then the random ones.
    top_records = to_records(req.activations)
    random_records = to_records(req.random_activations)
    records = top_records + random_records
    scale = neuron_max(records, req.max_activation)  # NothingToExplain when nothing activates
    seed = getattr(req, "seed", None)
    splits = split_texts(
        [r.max_value for r in top_records], len(random_records), DEFAULT_SEED if seed is None else seed
    )
    # The proposer sees the proposal part of the top texts only (contrast texts included);
    # with nothing held out, every text, as its contrast candidates too.
    shown = [top_records[i] for i in splits.proposal] if splits.held_out else records
    test = splits.test_indices(len(top_records)) if splits.held_out else None
    feedback = splits.feedback_indices(len(top_records)) if splits.held_out else None

    backend = runtime.explainer_backend(req.explainer, required=not req.dry_run)
    proposer_model = req.model or settings.explainer_model
    judge_model = req.model or settings.simulator_model
    llm = LLMProposer(
        backend, proposer_model, shown,
        scale=scale, threshold=req.threshold, top_k=req.top_k, temperature=req.temperature,
    )
    top = select_top(shown, req.top_k)
    described = {
        "top_texts": len(top),
        "contrast_texts": len(select_contrast(shown, top, scale, DEFAULT_CONTRAST_K)),
    }
    if req.dry_run:
        messages = llm.messages([], budget.hypotheses_per_round)
        return {
            "strategy": "search",
            "explanation": None,
            "dry_run": True,
            "messages": messages,
            "prompt_tokens": count_message_tokens(messages),
            "proposer": {"backend": backend.name if backend else OFFLINE, "model": proposer_model, **described},
            "budget": asdict(budget),
            "splits": splits.to_dict(),
            "offline": backend is None,
        }

    texts = [r.tokens for r in records]
    if backend is None:
        judge = OfflineJudge(runtime.simulator(OFFLINE))
        propose: Any = OfflineProposer(shown, scale=scale, threshold=req.threshold)
        first_evaluation = Cost()
        embedder = None  # offline hypotheses quote their tokens: compared exactly
        concurrency = 1
        proposer_info = {"backend": OFFLINE, "model": None, "top_texts": len(top), "contrast_texts": 0}
    else:
        first_evaluation = judge_forecast(texts, JUDGE_BATCH_SIZE)
        inner = max(1, min(settings.llm_concurrency, first_evaluation.calls))
        judge = LLMJudge(
            backend, judge_model, batch_size=JUDGE_BATCH_SIZE, concurrency=inner, cache=runtime.cache
        )
        propose = llm
        embedder = runtime.embedder
        concurrency = max(1, settings.llm_concurrency // inner)
        proposer_info = {"backend": backend.name, "model": proposer_model, **described}

    result = run_search(
        records,
        propose=propose,
        judge=lambda condition, when: judge(condition, texts, deadline=when),
        budget=Budget(budget.max_rounds, budget.max_llm_calls, budget.max_tokens),
        hypotheses_per_round=budget.hypotheses_per_round,
        patience=budget.patience,
        judge_cost=first_evaluation,
        deduplicator=Deduplicator(embedder),
        concurrency=concurrency,
        deadline=deadline,
        test=test,
        feedback=feedback,
    )
    ranked = rank_hypotheses(result.evaluations, ALPHA, held_out=splits.held_out)
    payload = {
        "strategy": "search",
        "explanation": ranked[0].hypothesis,
        "hypotheses": [h.to_dict() for h in ranked],
        "correction": CORRECTION,
        "alpha": ALPHA,
        "p_value_test": P_VALUE_TEST,
        "significant": sum(h.significant for h in ranked),
        "rounds": result.rounds,
        "stopped_because": result.stopped_because,
        "budget": asdict(budget),
        "texts": len(records),
        "splits": splits.to_dict(),
        "held_out": splits.held_out,
        "proposer": proposer_info,
        "judge": {
            "name": judge.name,
            "model": judge.model if backend is not None else None,
            "batch_size": JUDGE_BATCH_SIZE if backend is not None else None,
        },
        "history": [r.to_dict() for r in result.history],
        "duplicates": [asdict(d) for d in result.duplicates],
        "failures": _failures(result),
        "offline": backend is None,
        "max_activation": scale,
    }
    simulation_usage = Usage()
    if req.simulate_best:
        tested = records if test is None else [records[i] for i in test]
        payload["simulation"], simulation_usage = _simulate(
            ranked[0].hypothesis, tested, runtime.simulator(req.simulator), deadline
        )
        payload["simulation_score"] = payload["simulation"]["score"]
    payload["usage"] = (result.usage + simulation_usage).to_dict()
    payload["usage_by_step"] = {
        "proposer": result.proposer_usage.to_dict(),
        "judge": result.judge_usage.to_dict(),
        "simulation": simulation_usage.to_dict(),
    }
    return payload


def _failures(result: SearchResult) -> dict:
    """How many judge answers were unusable (on any text, proposal or test), and a few of the reasons."""
    reasons = [
        {"hypothesis": e.hypothesis, "index": f.index, "reason": f.reason}
        for e in result.evaluations
        for f in e.failures
    ]
    return {"answers": len(reasons), "examples": reasons[:10]}


def _simulate(
    explanation: str, records: list[ActivationRecord], simulator: Any, deadline: float | None
) -> tuple[dict, Usage]:
    """The simulation scorer on the best hypothesis, over the test texts (every text when none
    is held out), with the request's simulator or the default."""
    out: dict[str, Any] = {"simulator": simulator.name, "model": simulator.model}
    try:
        scored = score_explanation(explanation, records, simulator, deadline=deadline)
    except LLMError as exc:
        # The search itself succeeded; its answer stands without the extra score.
        return {**out, "score": None, "error": str(exc)}, Usage()
    score = scored.score if scored.score is None or math.isfinite(scored.score) else None
    texts_scored = sum(s is not None for s in scored.scored)
    return {**out, "score": score, "texts_scored": texts_scored, "usage": scored.usage.to_dict()}, scored.usage
