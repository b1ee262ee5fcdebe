"""`POST /explain` with `strategy: "single"`: a task in, the response body out.

One prompt in the task's style, `n` candidates; with `score`, every candidate is scored
by the given simulator on held-out texts and the best comes first. Nothing here imports
Flask or reads settings: the HTTP layer hands in the task and the built backend.
(`strategy: "search"` is `explainer.search.service.explain_by_search`.)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from core.names import OFFLINE
from core.records import ActivationRecord
from explainer.best_of_n import explain_best_of_n
from explainer.explain import ExplainResult, explain
from llm.backend import ChatBackend
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer.scorers.simulation import score_explanation


@dataclass(frozen=True)
class ExplainTask:
    """What an explanation is asked for. `model` None: the offline explainer (no backend)."""

    records: list[ActivationRecord]
    random_records: list[ActivationRecord] = field(default_factory=list)
    style: str = "original"
    model: str | None = None
    n: int = 1
    temperature: float = 1.0
    threshold: int = 1
    max_activation: float | None = None
    top_k: int = 5
    token_budget: int = 16000
    score: bool = False
    dry_run: bool = False


def explain_single(
    task: ExplainTask,
    backend: ChatBackend | None,
    simulator: Callable[[], Any],
    *,
    deadline: float | None,
) -> dict:
    """The /explain response for `strategy: "single"`. `backend` None: the offline explainer;
    `simulator()` builds the simulator that scores candidates (with `task.score`).

    Raises ExplainerError for what the task asks wrongly (HTTP 400), and the LLM errors.
    """
    options = dict(
        style=task.style,
        backend=backend,
        model=task.model if backend is not None else None,
        n=task.n,
        temperature=task.temperature,
        threshold=task.threshold,
        max_activation=task.max_activation,
        token_budget=task.token_budget,
        deadline=deadline,
        dry_run=task.dry_run,
    )
    if task.score and not task.dry_run:
        result, extra = _best_of_n(task, simulator(), options, deadline)
    else:
        result = explain(task.records, top_k=task.top_k, **options)
        extra = {"candidates": [{"explanation": c, "score": None} for c in result.candidates]}
    payload = result.to_dict()
    if not task.dry_run:
        payload.pop("messages")
    payload.pop("candidates")
    payload.update(extra)
    payload["offline"] = result.backend == OFFLINE
    payload["strategy"] = "single"
    return payload


def _best_of_n(
    task: ExplainTask, simulator: Any, options: dict, deadline: float | None
) -> tuple[ExplainResult, dict]:
    """The explanation run with its candidates ranked by their held-out simulation score."""
    scoring = Usage()

    def simulate_and_score(explanation: str, heldout: Sequence[ActivationRecord]):
        nonlocal scoring
        try:
            scored = score_explanation(explanation, heldout, simulator, deadline=deadline)
        except UpstreamError:
            return None  # this candidate goes unscored; the others are still ranked
        scoring = scoring + scored.usage
        return scored.score

    best = explain_best_of_n(
        task.records,
        simulate_and_score,
        random_records=task.random_records,
        top_k=task.top_k,
        **options,
    )
    return best.result, {
        "candidates": [{"explanation": c.explanation, "score": c.score} for c in best.ranked],
        "scoring": {
            "simulator": {"name": simulator.name, "model": simulator.model},
            "heldout_texts": best.heldout_texts,
            "usage": scoring.to_dict(),
        },
    }
