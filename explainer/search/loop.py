"""The search loop: propose -> evaluate -> feed back, in rounds, until a budget or patience ends it.

Each round asks the proposer for `hypotheses_per_round` hypotheses (it sees every hypothesis
tried so far with its score), drops near-duplicates of those already tried, and evaluates
the new ones (in parallel, results in proposal order). The loop stops, and says why:

- `max_rounds`: the rounds are spent;
- `max_llm_calls` / `max_tokens`: the next step would not fit. Before each step its cost is
  forecast (a proposer call: its prompt counted exactly plus its completion cap; an
  evaluation: one call per judge batch, and the most tokens an evaluation took so far, or the
  judge's estimate before the first) and a step that does not fit is not started. A round
  evaluates as many of its new hypotheses as fit. Only the judge's re-asks of unusable
  answers can take the usage a little past the budget;
- `patience`: the best correlation has not improved for `patience` rounds in a row;
- `exhausted`: a deterministic proposer has nothing new to propose;
- `deadline`: the request's deadline is near or passed (a round is not started when less
  time is left than the longest round so far took; evaluations that finished in time are kept);
- `upstream_error`: the LLM backend failed once some hypotheses were evaluated (before that,
  the error is raised).

Nothing here reads the clock for anything but the deadline, and evaluations are collected in
proposal order, so the search is deterministic given the backend's answers.
"""
from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from core.parallel import DEADLINE_GRACE
from core.records import ActivationRecord
from explainer.errors import ExplainerError
from explainer.search.evaluate import Evaluation, Judge, evaluate
from explainer.search.propose import Cost, Deduplicator, Duplicate, Proposal, Scored
from llm.errors import DeadlineExceeded, LLMError, UpstreamError
from llm.usage import Usage

log = logging.getLogger(__name__)

MAX_ROUNDS = "max_rounds"
MAX_LLM_CALLS = "max_llm_calls"
MAX_TOKENS = "max_tokens"
PATIENCE = "patience"
EXHAUSTED = "exhausted"
DEADLINE = "deadline"
UPSTREAM_ERROR = "upstream_error"

MIN_IMPROVEMENT = 1e-9  # a tie is not progress


class BudgetTooSmall(ExplainerError):
    """Not even one round fits the budget (HTTP 400: the caller's numbers are the problem)."""


class Proposer(Protocol):
    def __call__(self, tried: Sequence[Scored], n: int, deadline: float | None = None) -> Proposal: ...

    def forecast(self, tried: Sequence[Scored], n: int) -> Cost: ...


@dataclass(frozen=True)
class Budget:
    max_rounds: int
    max_llm_calls: int | None = None  # None: unlimited
    max_tokens: int | None = None


@dataclass
class RoundLog:
    round: int
    proposed: int  # usable hypotheses in the proposer's answer
    rejected: int  # list items that were not usable hypotheses
    duplicates: int  # dropped as near-duplicates of hypotheses already tried
    evaluated: int
    best_correlation: float | None  # the best so far on the proposal texts, after this round

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SearchResult:
    evaluations: list[Evaluation]  # every hypothesis evaluated, in the order tried
    rounds: int
    stopped_because: str
    proposer_usage: Usage = field(default_factory=Usage)
    judge_usage: Usage = field(default_factory=Usage)
    duplicates: list[Duplicate] = field(default_factory=list)
    history: list[RoundLog] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return self.proposer_usage + self.judge_usage


class _Spent:
    """Usage so far against the budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.usage = Usage()

    def add(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    def refusal(self, cost: Cost) -> str | None:
        """Which budget `cost` would break, or None when it fits."""
        b = self.budget
        if b.max_llm_calls is not None and self.usage.llm_calls + cost.calls > b.max_llm_calls:
            return MAX_LLM_CALLS
        if b.max_tokens is not None and self.usage.total_tokens + cost.tokens > b.max_tokens:
            return MAX_TOKENS
        return None

    def how_many(self, cost: Cost, wanted: int) -> tuple[int, str | None]:
        """How many steps of `cost` fit (at most `wanted`), and the budget that limits it."""
        b = self.budget
        fits, limit = wanted, None
        if b.max_llm_calls is not None and cost.calls > 0:
            n = max(0, (b.max_llm_calls - self.usage.llm_calls) // cost.calls)
            if n < fits:
                fits, limit = n, MAX_LLM_CALLS
        if b.max_tokens is not None and cost.tokens > 0:
            n = max(0, (b.max_tokens - self.usage.total_tokens) // cost.tokens)
            if n < fits:
                fits, limit = n, MAX_TOKENS
        return fits, limit


def _tried(evaluations: Sequence[Evaluation]) -> list:
    """What the proposer is told: each hypothesis with its measures on the proposal texts."""
    return [e.feedback for e in evaluations]


def _best(evaluations: Sequence[Evaluation]) -> float | None:
    """The best correlation on the proposal texts: patience never looks at the test texts."""
    scores = [e.feedback.correlation for e in evaluations if e.feedback.correlation is not None]
    return max(scores) if scores else None


def run_search(
    records: Sequence[ActivationRecord],
    *,
    propose: Proposer,
    judge: Judge,
    budget: Budget,
    hypotheses_per_round: int,
    patience: int,
    judge_cost: Cost = Cost(),
    deduplicator: Deduplicator | None = None,
    concurrency: int = 1,
    deadline: float | None = None,
    test: Sequence[int] | None = None,
    feedback: Sequence[int] | None = None,
) -> SearchResult:
    """Search for the hypothesis that best tracks the neuron on `records`.

    `judge(condition, deadline)` answers for every text of `records`; `judge_cost` is its
    forecast cost of one evaluation before any was measured. `test` and `feedback` (indices
    into `records`; None: all) are the texts each hypothesis is measured on for the report and
    for the proposer (see splits.py). Raises what the first round
    raises (UpstreamError, BackendUnavailable, DeadlineExceeded), and UpstreamError when
    nothing usable came back at all (no hypothesis, or no usable answer to any).
    """
    if budget.max_rounds < 1 or hypotheses_per_round < 1 or patience < 1:
        raise ValueError("max_rounds, hypotheses_per_round and patience must be at least 1")
    dedup = deduplicator or Deduplicator()
    spent = _Spent(budget)
    result = SearchResult(evaluations=[], rounds=0, stopped_because=MAX_ROUNDS)
    best: float | None = None
    stale = 0
    longest_round = 0.0
    n = hypotheses_per_round

    def evaluation_cost() -> Cost:
        measured = [e.usage.total_tokens for e in result.evaluations if e.usage.llm_calls]
        return Cost(judge_cost.calls, max(measured) if measured else judge_cost.tokens)

    def stop(reason: str) -> SearchResult:
        result.stopped_because = reason
        return _checked(result)

    def too_small(reason: str, step: Cost, one: Cost) -> BudgetTooSmall:
        return BudgetTooSmall(
            f"{reason}: the budget does not cover one round (a proposer call and one evaluation "
            f"take about {step.calls + one.calls} LLM calls and {step.tokens + one.tokens} tokens)"
        )

    while True:
        if result.rounds >= budget.max_rounds:
            return stop(MAX_ROUNDS)
        step = propose.forecast(_tried(result.evaluations), n)
        one = evaluation_cost()
        refusal = spent.refusal(Cost(step.calls + one.calls, step.tokens + one.tokens))
        if refusal is not None:
            if not result.evaluations:
                raise too_small(refusal, step, one)
            return stop(refusal)
        if deadline is not None and deadline - time.monotonic() <= longest_round:
            if not result.evaluations:
                raise DeadlineExceeded("the request's deadline passed before the search started")
            return stop(DEADLINE)

        started = time.monotonic()
        round_number = result.rounds + 1
        try:
            proposal = propose(_tried(result.evaluations), n, deadline)
        except (DeadlineExceeded, LLMError) as exc:
            if not result.evaluations:
                raise
            log.warning("search stopped in round %d: %s", round_number, exc)
            return stop(DEADLINE if isinstance(exc, DeadlineExceeded) else UPSTREAM_ERROR)
        result.rounds = round_number
        spent.add(proposal.usage)
        result.proposer_usage = result.proposer_usage + proposal.usage
        fresh, duplicates = dedup.filter(proposal.hypotheses, [e.hypothesis for e in result.evaluations])
        result.duplicates.extend(duplicates)
        fresh = fresh[:n]

        count, limit = spent.how_many(evaluation_cost(), len(fresh))
        chosen = fresh[:count]
        evaluations, error = _evaluate_all(
            lambda hypothesis: evaluate(
                hypothesis, round_number, records, judge, deadline, test=test, feedback=feedback
            ),
            chosen,
            concurrency,
            deadline,
        )
        for evaluation in evaluations:
            spent.add(evaluation.usage)
            result.judge_usage = result.judge_usage + evaluation.usage
        result.evaluations.extend(evaluations)
        if error is not None and not result.evaluations:
            raise error

        now_best = _best(result.evaluations)
        improved = now_best is not None and (best is None or now_best > best + MIN_IMPROVEMENT)
        best, stale = (now_best, 0) if improved else (best, stale + 1)
        result.history.append(
            RoundLog(round_number, len(proposal.hypotheses), proposal.rejected, len(duplicates), len(evaluations), best)
        )
        longest_round = max(longest_round, time.monotonic() - started)
        if error is not None:
            log.warning("search stopped in round %d: %s", round_number, error)
            return stop(DEADLINE if isinstance(error, DeadlineExceeded) else UPSTREAM_ERROR)
        if limit is not None:
            return stop(limit)
        if proposal.exhausted and not fresh:
            return stop(EXHAUSTED)
        if stale >= patience:
            return stop(PATIENCE)


def _evaluate_all(
    fn: Callable[[str], Evaluation], hypotheses: Sequence[str], concurrency: int, deadline: float | None
) -> tuple[list[Evaluation], BaseException | None]:
    """`fn` over `hypotheses` on up to `concurrency` threads: the evaluations that finished,
    in proposal order, and the first error (in that order) of those that did not. Unlike a
    plain parallel map, a deadline or a backend failure in one evaluation does not throw away
    the others, nor the LLM usage they already cost."""
    if not hypotheses:
        return [], None
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(hypotheses))), thread_name_prefix="search")
    try:
        futures = [pool.submit(fn, h) for h in hypotheses]
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) + DEADLINE_GRACE
        wait(futures, timeout=timeout)
        done, error = [], None
        for future in futures:
            if future.done() and future.exception() is None:
                done.append(future.result())
            elif error is None:
                error = future.exception() if future.done() else DeadlineExceeded(
                    "the request's deadline passed while evaluating hypotheses"
                )
        return done, error
    finally:
        # Evaluations still waiting on the backend end at the backend's own timeout.
        pool.shutdown(wait=False, cancel_futures=True)


def _checked(result: SearchResult) -> SearchResult:
    if not result.evaluations:
        raise UpstreamError(
            f"the search found no usable hypothesis in {result.rounds} round(s) "
            f"(stopped: {result.stopped_because})"
        )
    if all(e.answered == 0 for e in result.evaluations):
        raise UpstreamError(
            f"the judge gave no usable answer for any text of the {len(result.evaluations)} hypotheses tried"
        )
    return result


def calls_per_evaluation(texts: int, batch_size: int) -> int:
    return math.ceil(texts / batch_size) if texts else 0
