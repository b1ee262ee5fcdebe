"""`POST /explain` with `strategy: "single"`: a validated request in, the response body out.

One prompt in the request's style, `n` candidates; with `score`, every candidate is
scored by the default simulator on held-out texts and the best comes first. The view
calls `explain_single` and adds nothing but timing; nothing here imports Flask.
(`strategy: "search"` is `explainer.search.service.explain_by_search`.)
"""
from __future__ import annotations

from typing import Any, Sequence

from explainer.best_of_n import explain_best_of_n
from explainer.explain import OFFLINE, ExplainResult, explain
from llm.errors import UpstreamError
from llm.usage import Usage
from scorer.records import ActivationRecord, to_records
from scorer.scorers.simulation import score_explanation


def explain_single(req: Any, runtime: Any, *, deadline: float | None) -> dict:
    """The /explain response for `strategy: "single"` (`req` is api.ExplainRequest).

    Raises ExplainerError for what the request asks wrongly (HTTP 400), and the LLM errors.
    """
    settings = runtime.settings
    backend = runtime.explainer_backend(req.explainer, required=not req.dry_run)
    records = to_records(req.activations)
    options = dict(
        style=req.style,
        backend=backend,
        model=(req.model or settings.explainer_model) if backend is not None else None,
        n=req.n,
        temperature=req.temperature,
        threshold=req.threshold,
        max_activation=req.max_activation,
        # The caller's budget, never above the server's: the prompt must fit the model.
        token_budget=min(req.max_prompt_tokens or settings.explainer_max_prompt_tokens,
                         settings.explainer_max_prompt_tokens),
        deadline=deadline,
        dry_run=req.dry_run,
    )
    if req.score and not req.dry_run:
        result, extra = _best_of_n(req, runtime, records, options, deadline)
    else:
        result = explain(records, top_k=req.top_k, **options)
        extra = {"candidates": [{"explanation": c, "score": None} for c in result.candidates]}
    payload = result.to_dict()
    if not req.dry_run:
        payload.pop("messages")
    payload.pop("candidates")
    payload.update(extra)
    payload["offline"] = result.backend == OFFLINE
    payload["strategy"] = "single"
    return payload


def _best_of_n(
    req: Any,
    runtime: Any,
    records: Sequence[ActivationRecord],
    options: dict,
    deadline: float | None,
) -> tuple[ExplainResult, dict]:
    """The explanation run with its candidates ranked by their held-out simulation score."""
    simulator = runtime.simulator(req.simulator)
    scoring = Usage()

    def simulate_and_score(explanation, heldout):
        nonlocal scoring
        try:
            scored = score_explanation(explanation, heldout, simulator, deadline=deadline)
        except UpstreamError:
            return None  # this candidate goes unscored; the others are still ranked
        scoring = scoring + scored.usage
        return scored.score

    best = explain_best_of_n(
        records,
        simulate_and_score,
        random_records=to_records(req.random_activations),
        top_k=req.top_k,
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
