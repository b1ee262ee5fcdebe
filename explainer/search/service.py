"""`POST /explain` with `strategy: "search"`: a validated request in, the response body out.

This is the wiring: the budget (the request's numbers, capped by the server's), the proposer
and judge (an LLM's when one is configured, else the offline ones), the loop, the ranking,
and optionally a simulation score for the best hypothesis. The view calls `explain_by_search`
and adds nothing but timing; nothing here imports Flask.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from explainer.errors import ExplainerError
from explainer.explain import OFFLINE
from explainer.records import ActivationRecord, neuron_max, select_top
from explainer.search.loop import Budget, SearchResult, run_search
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
from llm.backend import ChatBackend
from llm.errors import LLMError
from llm.tokens import count_message_tokens
from llm.usage import Usage
from scorer.scorers.simulation import score_explanation

# The budget a request gets when it names none; each is also capped by the server's
# SEARCH_MAX_* setting. 4 rounds of 5 hypotheses on 20 texts take 84 calls.
DEFAULT_MAX_ROUNDS = 4
DEFAULT_MAX_LLM_CALLS = 100
DEFAULT_MAX_TOKENS = 150_000
DEFAULT_HYPOTHESES_PER_ROUND = 5
DEFAULT_PATIENCE = 2
# Texts per judge prompt: None lets the token budget (SIMULATOR_BATCH_TOKENS) decide, so one
# prompt usually holds every text and the provider's prefix cache serves them to the next condition.
JUDGE_BATCH_SIZE = None


@dataclass(frozen=True)
class SearchTask:
    """What a search is asked: the texts, how to show them, and the budget asked for
    (None: the default), each capped by `SearchCaps`."""

    records: list[ActivationRecord]
    random_records: list[ActivationRecord] = field(default_factory=list)
    max_activation: float | None = None
    threshold: int = 1
    top_k: int = 5
    temperature: float = 1.0
    dry_run: bool = False
    simulate_best: bool = False
    max_rounds: int | None = None
    max_llm_calls: int | None = None
    max_tokens: int | None = None
    hypotheses_per_round: int | None = None
    patience: int | None = None
    seed: int | None = None  # of the proposal/test split


@dataclass(frozen=True)
class SearchCaps:
    """The server's caps on any search (SEARCH_MAX_*); max_rounds 0 turns the strategy off."""

    max_rounds: int
    max_llm_calls: int
    max_tokens: int


@dataclass(frozen=True)
class SearchParts:
    """The built objects a search runs on. `backend` None: the offline proposer (and
    `judge` should then be the offline judge)."""

    backend: ChatBackend | None
    proposer_model: str | None
    judge: Any  # scorer.judge.LLMJudge or OfflineJudge: __call__, forecast, with_concurrency
    simulator: Callable[[], Any]  # the simulation scorer's simulator, for simulate_best
    embedder: Any = None  # near-duplicate hypotheses by meaning; None: compared as text
    concurrency: int = 8


@dataclass(frozen=True)
class SearchBudget:
    max_rounds: int
    max_llm_calls: int
    max_tokens: int
    hypotheses_per_round: int
    patience: int
    capped: bool  # the request asked for more than the server allows

    @classmethod
    def from_task(cls, task: SearchTask, caps: SearchCaps) -> "SearchBudget":
        asked = {
            "max_rounds": task.max_rounds or DEFAULT_MAX_ROUNDS,
            "max_llm_calls": task.max_llm_calls or DEFAULT_MAX_LLM_CALLS,
            "max_tokens": task.max_tokens or DEFAULT_MAX_TOKENS,
        }
        limits = asdict(caps)
        if limits["max_rounds"] < 1:
            raise ExplainerError("strategy 'search' is disabled on this server (SEARCH_MAX_ROUNDS=0)")
        explicit = {k for k in asked if getattr(task, k) is not None}
        capped = any(asked[k] > limits[k] for k in explicit)
        return cls(
            **{k: min(asked[k], limits[k]) for k in asked},
            hypotheses_per_round=task.hypotheses_per_round or DEFAULT_HYPOTHESES_PER_ROUND,
            patience=task.patience or DEFAULT_PATIENCE,
            capped=capped,
        )


def explain_by_search(
    task: SearchTask, parts: SearchParts, caps: SearchCaps, *, deadline: float | None
) -> dict:
    """The /explain response for `strategy: "search"`.

    Raises ExplainerError for what the task asks wrongly (HTTP 400), and the LLM errors
    that come before any hypothesis was evaluated (502/503/504).
    """
    budget = SearchBudget.from_task(task, caps)
    # Every text is judged: the top texts, then the random ones.
    top_records = list(task.records)
    random_records = list(task.random_records)
    records = top_records + random_records
    scale = neuron_max(records, task.max_activation)  # NothingToExplain when nothing activates
    splits = split_texts(
        [r.max_value for r in top_records], len(random_records), DEFAULT_SEED if task.seed is None else task.seed
    )
    # The proposer sees the proposal part of the top texts only (contrast texts included);
    # with nothing held out, every text, as its contrast candidates too.
    shown = [top_records[i] for i in splits.proposal] if splits.held_out else records
    test = splits.test_indices(len(top_records)) if splits.held_out else None
    feedback = splits.feedback_indices(len(top_records)) if splits.held_out else None

    backend = parts.backend
    proposer_model = parts.proposer_model
    llm = LLMProposer(
        backend, proposer_model, shown,
        scale=scale, threshold=task.threshold, top_k=task.top_k, temperature=task.temperature,
    )
    top = select_top(shown, task.top_k)
    described = {
        "top_texts": len(top),
        "contrast_texts": len(select_contrast(shown, top, scale, DEFAULT_CONTRAST_K)),
    }
    if task.dry_run:
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
        judge = parts.judge
        propose: Any = OfflineProposer(shown, scale=scale, threshold=task.threshold)
        first_evaluation = Cost()
        embedder = None  # offline hypotheses quote their tokens: compared exactly
        concurrency = 1
        proposer_info = {"backend": OFFLINE, "model": None, "top_texts": len(top), "contrast_texts": 0}
    else:
        first_evaluation = Cost(*parts.judge.forecast(texts))
        # The judge's batches of one evaluation run in parallel, and evaluations beside them.
        inner = max(1, min(parts.concurrency, first_evaluation.calls))
        judge = parts.judge.with_concurrency(inner)
        propose = llm
        embedder = parts.embedder
        concurrency = max(1, parts.concurrency // inner)
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
            "batch_size": getattr(judge, "batch_size", None) if backend is not None else None,
        },
        "history": [r.to_dict() for r in result.history],
        "duplicates": [asdict(d) for d in result.duplicates],
        "failures": _failures(result),
        "offline": backend is None,
        "max_activation": scale,
    }
    simulation_usage = Usage()
    if task.simulate_best:
        tested = records if test is None else [records[i] for i in test]
        payload["simulation"], simulation_usage = _simulate(
            ranked[0].hypothesis, tested, parts.simulator(), deadline
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
