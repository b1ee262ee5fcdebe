"""Hypothesis search pieces with fakes: parsing, de-duplication, contrast texts, agreement, the loop."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from core.records import ActivationRecord
from explainer.search.evaluate import agreement, best_threshold, evaluate
from explainer.search.loop import (
    EXHAUSTED,
    MAX_LLM_CALLS,
    MAX_ROUNDS,
    MAX_TOKENS,
    PATIENCE,
    UPSTREAM_ERROR,
    Budget,
    BudgetTooSmall,
    run_search,
)
from explainer.search.offline import OfflineProposer, condition, tokens_of
from explainer.search.propose import (
    Cost,
    Deduplicator,
    Proposal,
    build_messages,
    clean_hypothesis,
    hypothesis_words,
    jaccard,
    parse_hypotheses,
    select_contrast,
)
from explainer.search.report import rank_hypotheses
from explainer.search.splits import split_texts
from llm.errors import UpstreamError
from llm.usage import Usage

# -- parsing ----------------------------------------------------------------------------


def test_a_numbered_list_is_parsed_and_cleaned():
    reply = (
        "Here are some hypotheses:\n"
        "1. The text mentions a zebra.\n"
        "2) **the text is about animals**\n"
        '3: "a word follows a number"\n'
        "- Hypothesis 4: the text names a city (r=0.52)\n"
        "5.\n"
        "6. I'm sorry, I can't do that\n"
        "I hope these help!"
    )
    hypotheses, rejected = parse_hypotheses(reply)
    assert hypotheses == [
        "The text mentions a zebra",
        "the text is about animals",
        "a word follows a number",
        "the text names a city",
    ]
    assert rejected == 1  # "6." is a refusal; "5." has no text and is not an item at all


@pytest.mark.parametrize("reply", [None, "", "no list here at all", "**Hypotheses:**", "1. 42", "1. " + "x" * 400])
def test_malformed_proposals_give_nothing(reply):
    hypotheses, _ = parse_hypotheses(reply)
    assert hypotheses == []


def test_clean_hypothesis_keeps_inner_quotes():
    assert clean_hypothesis('the text mentions "fox" or "leopard".') == 'the text mentions "fox" or "leopard"'


# -- near-duplicates --------------------------------------------------------------------


def test_jaccard_of_normalised_words_ignores_template_words_and_plurals():
    a = hypothesis_words("The text mentions a zebra.")
    b = hypothesis_words("the text contains zebras")
    assert a == b == frozenset({"zebra"})
    assert jaccard(a, hypothesis_words("the text mentions a horse")) == 0.0
    # A quoted literal counts whole, stopword or not.
    assert '"of"' in hypothesis_words('the token "of" after a verb')


def test_deduplicator_drops_near_duplicates_of_tried_and_of_each_other():
    dedup = Deduplicator()
    kept, duplicates = dedup.filter(
        ["The text mentions zebras", "the text mentions a horse", "text mentions horses", "striped animals"],
        ["the text mentions a zebra"],
    )
    assert kept == ["the text mentions a horse", "striped animals"]
    assert [(d.hypothesis, d.of) for d in duplicates] == [
        ("The text mentions zebras", "the text mentions a zebra"),
        ("text mentions horses", "the text mentions a horse"),
    ]


def test_hypotheses_quoting_different_tokens_are_never_duplicates():
    kept, duplicates = Deduplicator().filter(
        ['the text mentions "a", "b", "c", "d" or "e"'], ['the text mentions "a", "b", "c" or "d"']
    )
    assert len(kept) == 1 and not duplicates


class FakeEmbedder:
    """Two texts are the same when they share their first letter (a stand-in for meaning)."""

    def embed(self, texts):
        rows = np.zeros((len(texts), 26))
        for i, text in enumerate(texts):
            rows[i, ord(text.strip().lower()[0]) - ord("a")] = 1.0
        return rows


def test_deduplicator_uses_embedding_cosine_when_it_has_an_embedder():
    kept, duplicates = Deduplicator(FakeEmbedder()).filter(["zebras appear", "horses appear"], ["zoo animals"])
    assert kept == ["horses appear"]
    assert duplicates[0].by == "cosine"


def test_a_failing_embedder_falls_back_to_jaccard():
    class Broken:
        def embed(self, texts):
            raise RuntimeError("no model")

    kept, _ = Deduplicator(Broken()).filter(["zebras appear"], ["zoo animals"])
    assert kept == ["zebras appear"]


# -- contrast texts and the prompt -------------------------------------------------------


def rec(text: str, hot: dict[str, float] | None = None) -> ActivationRecord:
    tokens = [(" " if i else "") + w for i, w in enumerate(text.split())]
    values = [float((hot or {}).get(t.strip(), 0.0)) for t in tokens]
    return ActivationRecord(tokens, values)


def test_contrast_texts_are_off_and_share_the_most_words_with_the_top_texts():
    top = [rec("the zebra ran across the plain", {"zebra": 5}), rec("a zebra grazed on the plain", {"zebra": 4})]
    unrelated = rec("stock prices fell sharply today")
    similar = rec("a horse ran across the plain")  # shares ran, across, plain
    somewhat = rec("the plain was empty")  # shares plain
    weak_but_on = rec("the zebra crossing by the plain", {"zebra": 3})  # not off: 3/5 of the max
    chosen = select_contrast([*top, unrelated, similar, somewhat, weak_but_on], top, scale=5.0, k=2)
    assert chosen == [similar, somewhat]


def test_contrast_falls_back_to_the_weaker_half_when_no_text_is_off():
    records = [rec(f"w{i} zebra", {"zebra": 10 - i}) for i in range(6)]
    top = records[:2]
    chosen = select_contrast(records, top, scale=10.0, k=5)
    assert {r.tokens[0] for r in chosen} == {"w4", "w5"}


@dataclass
class Tried:
    hypothesis: str
    correlation: float | None
    balanced_accuracy: float | None
    round: int = 1


def test_the_prompt_shows_top_and_contrast_texts_and_the_tried_hypotheses_best_first():
    messages = build_messages(
        ["1. (10) the [zebra] ran"],
        ["1. (0) the horse ran"],
        [Tried("horses", 0.1, 0.55), Tried("zebras", 0.8, 0.9), Tried("all the same", None, 0.5)],
        4,
    )
    user = messages[-1]["content"]
    assert "the [zebra] ran" in user and "the horse ran" in user
    assert user.index("zebras") < user.index("horses") < user.index("all the same")
    assert "r=+0.80, accuracy=0.90: zebras" in user and "r=n/a" in user
    assert "Propose 4 new hypotheses" in user and "numbered list" in user


# -- agreement ------------------------------------------------------------------------


def test_agreement_excludes_failed_answers_and_counts_them():
    answers = [True, True, None, False, False, None]
    maxima = [5.0, 4.0, 9.0, 0.0, 1.0, 0.0]
    result = agreement(answers, maxima)
    assert result.answered == 4 and result.failed == 2 and result.yes == 2
    expected = float(np.corrcoef([1, 1, 0, 0], [5, 4, 0, 1])[0, 1])
    assert result.correlation == pytest.approx(expected)
    assert result.balanced_accuracy == 1.0 and result.threshold == 4.0


def test_best_threshold_by_hand():
    # Maxima 0,1,2,3,4 ; answers yes on 1,3,4.
    ba, threshold = best_threshold([False, True, False, True, True], [0, 1, 2, 3, 4])
    # t=1: on={1,2,3,4}: TPR 3/4, TNR 1/1 -> 0.875 ; t=3: on={3,4}: TPR 1, TNR 2/3 -> 0.833
    assert ba == pytest.approx(0.875) and threshold == 1.0


def test_best_threshold_edges():
    assert best_threshold([True, False], [2.0, 2.0]) == (None, None)  # one class
    assert best_threshold([True, True, True], [0.0, 1.0, 2.0]) == (0.5, None)  # constant answers
    assert agreement([None, None], [1.0, 0.0]).correlation is None


# -- the loop with fakes ---------------------------------------------------------------

PLANTED = "zebra"
RECORDS = [rec(f"the {w} ran far", {w: 5.0} if w == PLANTED else None) for w in
           ["zebra", "horse", "zebra", "dog", "zebra", "cat", "zebra", "cow", "bird", "zebra"]]
TEXTS = [r.tokens for r in RECORDS]


@dataclass
class FakeRun:
    answers: list
    failures: list = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    probabilities: list = field(default_factory=list)


class FakeJudge:
    """Yes iff the text contains a word of the condition; each run costs 2 calls and 100 tokens."""

    def __init__(self, calls=2, tokens=100, broken=()):
        self.calls, self.tokens, self.broken = calls, tokens, set(broken)
        self.asked = []

    def __call__(self, condition, deadline=None):
        self.asked.append(condition)
        words = set(condition.lower().replace('"', " ").split())
        answers = []
        for i, tokens in enumerate(TEXTS):
            if i in self.broken:
                answers.append(None)
            else:
                answers.append(any(t.strip() in words for t in tokens))
        return FakeRun(answers, usage=Usage(llm_calls=self.calls, prompt_tokens=self.tokens))


class ScriptedProposer:
    def __init__(self, rounds, calls=1, tokens=50, fail_at=None):
        self.rounds, self.calls, self.tokens, self.fail_at = list(rounds), calls, tokens, fail_at
        self.seen = []

    def forecast(self, tried, n):
        return Cost(self.calls, self.tokens)

    def __call__(self, tried, n, deadline=None):
        self.seen.append([t.hypothesis for t in tried])
        k = len(self.seen) - 1
        if self.fail_at is not None and k >= self.fail_at:
            raise UpstreamError("refused")
        items = self.rounds[k] if k < len(self.rounds) else []
        return Proposal(list(items), usage=Usage(llm_calls=self.calls, prompt_tokens=self.tokens))


def search(proposer, judge=None, **options):
    defaults = dict(budget=Budget(max_rounds=5), hypotheses_per_round=3, patience=2, judge_cost=Cost(2, 100))
    defaults.update(options)
    return run_search(RECORDS, propose=proposer, judge=judge or FakeJudge(), **defaults)


def test_the_loop_finds_the_planted_hypothesis_and_feeds_scores_back():
    proposer = ScriptedProposer([["the text mentions a horse", "cats"], ["a zebra appears", "dogs"], ["cows"], ["birds"]])
    result = search(proposer)
    ranked = rank_hypotheses(result.evaluations)
    assert ranked[0].hypothesis == "a zebra appears" and ranked[0].correlation == pytest.approx(1.0)
    # Round 2 saw round 1's hypotheses; the best did not improve after round 2.
    assert proposer.seen[1] == ["the text mentions a horse", "cats"]
    assert result.rounds == 4 and result.stopped_because == PATIENCE


def test_the_loop_stops_on_rounds():
    result = search(ScriptedProposer([[f"word{i}"] for i in range(9)]), budget=Budget(max_rounds=2), patience=9)
    assert result.rounds == 2 and result.stopped_because == MAX_ROUNDS


def test_the_loop_stops_on_llm_calls_without_exceeding_them():
    # Each round: 1 proposer call + 2 calls per hypothesis.
    rounds = [[f"a{i}", f"b{i}", f"c{i}"] for i in range(9)]
    result = search(ScriptedProposer(rounds), budget=Budget(max_rounds=9, max_llm_calls=12), patience=9)
    assert result.stopped_because == MAX_LLM_CALLS
    assert result.usage.llm_calls <= 12
    # Round 1: 1 + 3*2 = 7; round 2: 1 call, then only 2 of 3 hypotheses fit (7 + 1 + 4 = 12).
    assert [r.evaluated for r in result.history] == [3, 2]


def test_the_loop_stops_on_tokens_without_exceeding_them():
    rounds = [[f"a{i}", f"b{i}"] for i in range(9)]
    result = search(ScriptedProposer(rounds), budget=Budget(max_rounds=9, max_tokens=600), patience=9)
    assert result.stopped_because == MAX_TOKENS
    assert result.usage.total_tokens <= 600
    assert result.usage.total_tokens == 500  # 2 rounds of 50 + 2*100; a third would need 150 more


def test_a_budget_below_one_round_is_refused():
    with pytest.raises(BudgetTooSmall):
        search(ScriptedProposer([["x"]]), budget=Budget(max_rounds=3, max_llm_calls=2))


def test_malformed_and_duplicate_rounds_count_against_patience():
    proposer = ScriptedProposer([["zebra"], [], ["zebras", "the text mentions zebra"], ["horse"]])
    result = search(proposer, patience=2)
    assert result.stopped_because == PATIENCE and result.rounds == 3
    assert [d.hypothesis for d in result.duplicates] == ["zebras", "the text mentions zebra"]
    assert [r.evaluated for r in result.history] == [1, 0, 0]


def test_an_upstream_error_after_the_first_round_keeps_the_results():
    result = search(ScriptedProposer([["zebra", "horse"]], fail_at=1), patience=5)
    assert result.stopped_because == UPSTREAM_ERROR and len(result.evaluations) == 2
    with pytest.raises(UpstreamError):
        search(ScriptedProposer([], fail_at=0))


def test_nothing_usable_at_all_is_an_upstream_error():
    with pytest.raises(UpstreamError, match="no usable hypothesis"):
        search(ScriptedProposer([[], [], []]), patience=3)
    with pytest.raises(UpstreamError, match="no usable answer"):
        search(ScriptedProposer([["zebra"]]), judge=FakeJudge(broken=range(len(TEXTS))), patience=1)


def test_failed_answers_are_excluded_and_counted():
    result = search(ScriptedProposer([["zebra"]]), judge=FakeJudge(broken={0, 1}), patience=1)
    evaluation = result.evaluations[0]
    assert evaluation.failed == 2 and evaluation.answered == len(TEXTS) - 2
    assert evaluation.correlation == pytest.approx(1.0)


def test_the_loop_is_deterministic_given_the_answers():
    rounds = [["horse", "zebra", "dog"], ["cat", "cow"], ["bird"]]
    a = search(ScriptedProposer(rounds), concurrency=4)
    b = search(ScriptedProposer(rounds), concurrency=1)
    assert [(e.hypothesis, e.correlation, e.round) for e in a.evaluations] == [
        (e.hypothesis, e.correlation, e.round) for e in b.evaluations
    ]
    assert a.usage == b.usage


def test_evaluate_pads_a_short_judge_answer_with_failures():
    short = lambda condition, deadline: FakeRun([True, False])  # noqa: E731
    evaluation = evaluate("zebra", 1, RECORDS, short)
    assert evaluation.answered == 2 and evaluation.failed == len(RECORDS) - 2


# -- the offline proposer ------------------------------------------------------------------


def test_the_offline_proposer_grows_the_best_token_set():
    records = [
        rec("the zebra ran", {"zebra": 10}),
        rec("a horse ran", {"horse": 6}),
        rec("the cat sat", {"cat": 3}),
        rec("the dog sat"),
    ]
    proposer = OfflineProposer(records, scale=10.0)
    assert proposer.tokens == ["zebra", "horse", "cat"]
    first = proposer([], 4).hypotheses
    assert first[0] == condition(["zebra", "horse", "cat"]) == 'the text mentions "zebra", "horse" or "cat"'
    assert first[1:] == ['the text mentions "zebra"', 'the text mentions "horse"', 'the text mentions "cat"']
    tried = [Tried(first[1], 0.9, 1.0), Tried(first[0], 0.5, 0.8)]
    second = proposer(tried, 5).hypotheses
    assert second[:2] == ['the text mentions "zebra" or "horse"', 'the text mentions "zebra" or "cat"']
    assert tokens_of(second[0]) == ["zebra", "horse"]


def test_the_offline_proposer_says_when_it_is_exhausted():
    records = [rec("the zebra ran", {"zebra": 10}), rec("the dog sat")]
    proposer = OfflineProposer(records, scale=10.0)
    first = proposer([], 5)
    assert first.hypotheses == ['the text mentions "zebra"']
    tried = [Tried(first.hypotheses[0], 1.0, 1.0)]
    assert proposer(tried, 5).exhausted
    assert math.isclose(proposer.forecast(tried, 5).calls, 0)


def test_the_offline_search_stops_when_exhausted():
    records = [rec("the zebra ran", {"zebra": 10}), rec("the dog sat"), rec("a zebra slept", {"zebra": 8}), rec("a cat ate")]

    def judge(condition, deadline=None):
        words = set(tokens_of(condition))
        return FakeRun([any(t.strip() in words for t in r.tokens) for r in records])

    result = run_search(
        records, propose=OfflineProposer(records, scale=10.0), judge=judge,
        budget=Budget(max_rounds=5), hypotheses_per_round=5, patience=5,
    )
    assert result.stopped_because == EXHAUSTED
    assert [e.hypothesis for e in result.evaluations] == ['the text mentions "zebra"']


def test_a_deadline_mid_round_keeps_the_evaluations_that_finished():
    from llm.errors import DeadlineExceeded

    class SlowOnOne(FakeJudge):
        def __call__(self, condition, deadline=None):
            if condition == "cow":
                raise DeadlineExceeded("too slow")
            return super().__call__(condition, deadline)

    result = search(ScriptedProposer([["horse", "zebra"], ["cow", "cat"]]), judge=SlowOnOne(), patience=5, concurrency=2)
    assert result.stopped_because == "deadline"
    assert [e.hypothesis for e in result.evaluations] == ["horse", "zebra", "cat"]
    assert result.judge_usage.llm_calls == 3 * 2
    with pytest.raises(DeadlineExceeded):
        search(ScriptedProposer([["cow"]]), judge=SlowOnOne())


# -- held-out texts ---------------------------------------------------------------------


def test_the_split_is_stratified_seeded_and_disjoint():
    maxima = [3.0, 9.0, 0.0, 7.0, 0.0, 8.0, 1.0, 0.0, 0.0, 6.0, 0.0, 2.0]
    splits = split_texts(maxima, n_random=4, seed=3)
    assert splits.held_out is True and splits.note is None
    assert sorted(splits.proposal + splits.test) == list(range(len(maxima)))
    assert not set(splits.proposal) & set(splits.test)
    assert 1 in splits.proposal  # the strongest text is the proposer's
    # After the strongest, texts are paired by strength, one of each pair to each side.
    order = sorted(range(len(maxima)), key=lambda i: (-maxima[i], i))[1:]
    for k in range(0, len(order) - 1, 2):
        a, b = order[k], order[k + 1]
        assert (a in splits.proposal) != (b in splits.proposal)
    assert order[-1] in splits.test  # the odd one out is tested
    assert splits.random_test == [0, 1, 2, 3]
    assert split_texts(maxima, 4, seed=3) == splits
    assert any(split_texts(maxima, 4, seed=s).proposal != splits.proposal for s in range(4, 12))
    assert splits.test_indices(len(maxima)) == splits.test + [12, 13, 14, 15]
    assert splits.feedback_indices(len(maxima)) == splits.proposal


@pytest.mark.parametrize("maxima, n_random", [([5.0], 10), ([5.0, 1.0, 0.0], 0), ([5.0, 0.0, 1.0, 2.0, 0.0], 0)])
def test_too_few_texts_to_hold_out_say_so_and_use_every_text(maxima, n_random):
    splits = split_texts(maxima, n_random)
    assert splits.held_out is False and "too few texts" in splits.note
    assert splits.proposal == splits.test == list(range(len(maxima)))
    assert splits.to_dict()["note"] == splits.note


def test_a_small_request_with_random_texts_is_still_held_out():
    splits = split_texts([5.0, 2.0], n_random=3)
    assert splits.held_out is True
    assert splits.proposal == [0] and splits.test == [1] and splits.random_test == [0, 1, 2]


def test_evaluate_reports_the_test_texts_and_feeds_back_the_proposal_texts():
    # "zebra horse": yes on every zebra and horse text. On the proposal texts (zebras and a
    # horse) it tracks the neuron less than on the test texts (zebras and a dog).
    proposal, test = [0, 1, 2, 3], [4, 5, 6, 7, 8, 9]
    evaluation = evaluate("zebra horse", 1, RECORDS, FakeJudge(), test=test, feedback=proposal)
    maxima = [r.max_value for r in RECORDS]
    yes = [1.0 if ("zebra" in r.tokens[1] or "horse" in r.tokens[1]) else 0.0 for r in RECORDS]
    on_test = np.corrcoef([yes[i] for i in test], [maxima[i] for i in test])[0, 1]
    on_proposal = np.corrcoef([yes[i] for i in proposal], [maxima[i] for i in proposal])[0, 1]
    assert evaluation.correlation == pytest.approx(on_test) and evaluation.answered == len(test)
    assert evaluation.feedback.correlation == pytest.approx(on_proposal)
    assert evaluation.feedback.hypothesis == "zebra horse" and evaluation.feedback.round == 1
    # Without a split, the feedback is the reported measure.
    whole = evaluate("zebra horse", 1, RECORDS, FakeJudge())
    assert whole.feedback.correlation == whole.correlation


def test_the_proposer_and_patience_see_only_the_proposal_texts():
    class Recording(ScriptedProposer):
        def __call__(self, tried, n, deadline=None):
            self.told = [(t.hypothesis, t.correlation) for t in tried]
            return super().__call__(tried, n, deadline)

    proposer = Recording([["zebra horse"], ["dogs"]])
    result = search(proposer, budget=Budget(max_rounds=2), test=[4, 5, 6, 7, 8, 9], feedback=[0, 1, 2, 3])
    first = result.evaluations[0]
    assert proposer.told == [("zebra horse", first.feedback.correlation)]
    assert first.feedback.correlation != pytest.approx(first.correlation)
    assert result.history[0].best_correlation == first.feedback.correlation
