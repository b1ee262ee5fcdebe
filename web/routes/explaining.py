"""Explaining route: POST /explain, one prompt (`single`) or a hypothesis search (`search`)."""
from __future__ import annotations

from flask import Blueprint, current_app, g

from core.records import to_records
from explainer.errors import ExplainerError
from explainer.search.service import JUDGE_BATCH_SIZE, SearchCaps, SearchParts, SearchTask, explain_by_search
from explainer.service import ExplainTask, explain_single
from web.bodies import check_texts, deadline, respond, settings, validated
from web.models import ExplainRequest

bp = Blueprint("explaining", __name__)


@bp.post("/explain")
def explain():
    req = validated(ExplainRequest)
    check_texts(activations=req.activations, random_activations=req.random_activations)
    runtime = current_app.extensions["runtime"]
    if req.strategy == "search":
        payload = _search(req, runtime)
    else:
        backend = runtime.explainer_backend(req.explainer, required=not req.dry_run)
        s = settings()
        task = ExplainTask(
            records=to_records(req.activations),
            random_records=to_records(req.random_activations),
            style=req.style,
            model=req.model or s.explainer_model,
            n=req.n,
            temperature=req.temperature,
            threshold=req.threshold,
            max_activation=req.max_activation,
            top_k=req.top_k,
            # The caller's budget, never above the server's: the prompt must fit the model.
            token_budget=min(req.max_prompt_tokens or s.explainer_max_prompt_tokens, s.explainer_max_prompt_tokens),
            score=req.score,
            dry_run=req.dry_run,
        )
        payload = explain_single(task, backend, lambda: runtime.simulator(req.simulator), deadline=deadline())
    g.log_fields.update(strategy=req.strategy, model=payload.get("model"), usage=payload.get("usage"))
    if "rounds" in payload:
        g.log_fields["rounds"] = payload["rounds"]
    return respond(payload)


def _search(req: ExplainRequest, runtime) -> dict:
    if req.n != 1 or req.score:
        raise ExplainerError(
            "n and score belong to strategy 'single'; the search ranks its own hypotheses "
            "(use simulate_best for a simulation score)"
        )
    s = settings()
    caps = SearchCaps(s.search_max_rounds, s.search_max_llm_calls, s.search_max_tokens)
    if caps.max_rounds < 1:
        raise ExplainerError("strategy 'search' is disabled on this server (SEARCH_MAX_ROUNDS=0)")
    task = SearchTask(
        records=to_records(req.activations),
        random_records=to_records(req.random_activations),
        max_activation=req.max_activation,
        threshold=req.threshold,
        top_k=req.top_k,
        temperature=req.temperature,
        dry_run=req.dry_run,
        simulate_best=req.simulate_best,
        max_rounds=req.max_rounds,
        max_llm_calls=req.max_llm_calls,
        max_tokens=req.max_tokens,
        hypotheses_per_round=req.hypotheses_per_round,
        patience=req.patience,
        seed=req.seed,
    )
    backend = runtime.explainer_backend(req.explainer, required=not req.dry_run)
    offline = backend is None
    parts = SearchParts(
        backend=backend,
        proposer_model=req.model or s.explainer_model,
        judge=None if req.dry_run else runtime.judge(
            "offline" if offline else "openai", req.model, batch_size=JUDGE_BATCH_SIZE
        ),
        simulator=lambda: runtime.simulator(req.simulator),
        embedder=None if offline else runtime.embedder,
        concurrency=s.llm_concurrency,
    )
    return explain_by_search(task, parts, caps, deadline=deadline())

