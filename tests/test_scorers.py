"""The cheaper scorers' parts: ROC-AUC and balanced accuracy, the yes/no judge (against the
loopback stub), the offline judge, the fuzzing marks and the two-class rule."""
from __future__ import annotations

import random

import numpy as np
import pytest

from core.records import ActivationRecord
from llm.cache import SQLiteCache
from llm.usage import Usage
from scorer import math
from scorer.judge import (
    JudgeRun,
    LLMJudge,
    OfflineJudge,
    judge,
    judge_offline,
    marks_fit,
    parse_answer,
    render_text,
)
from scorer.scorers.base import ScorerInputError, split_classes
from scorer.scorers.detection import DetectionScorer
from scorer.scorers.fuzzing import CORRECT, RANDOM, FuzzingScorer, plan_marks
from scorer.simulation import SequenceSimulation
from scorer.simulators.base import SimulationRun, TextFailure
from tests.stub_openai import JudgeResponder, StubOpenAI, StubReply, chat_body, error_body

# -- math ---------------------------------------------------------------------------------


def test_roc_auc_matches_scikit_learn_with_and_without_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(2, 40))
        labels = rng.random(n) < rng.uniform(0.1, 0.9)
        if labels.all() or not labels.any():
            labels[0] = not labels[0]
        # Integer scores: many ties; continuous ones: none.
        scores = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.normal(size=n)
        assert math.roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_roc_auc_edges():
    assert math.roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert math.roc_auc([0.9, 0.1], [False, True]) == 0.0
    assert math.roc_auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    assert math.roc_auc([0.1, 0.2], [True, True]) is None
    assert math.roc_auc([], []) is None
    with pytest.raises(ValueError):
        math.roc_auc([0.1, float("nan")], [True, False])


def test_balanced_accuracy_matches_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = random.Random(3)
    for _ in range(100):
        n = rng.randint(2, 30)
        labels = [rng.random() < 0.4 for _ in range(n)]
        labels[0], labels[1] = True, False
        predictions = [rng.random() < 0.5 for _ in range(n)]
        expected = metrics.balanced_accuracy_score(labels, predictions)
        assert math.balanced_accuracy(labels, predictions) == pytest.approx(expected)
    assert math.balanced_accuracy([True, True], [True, False]) is None


# -- rendering and parsing ------------------------------------------------------------------


def test_marks_wrap_runs_and_leave_the_leading_space_outside():
    tokens = ["The", " quick", " brown", " fox", " ran", "."]
    assert render_text(tokens) == "The quick brown fox ran."
    marks = [False, True, True, False, True, False]
    assert render_text(tokens, marks) == "The <<quick brown>> fox <<ran>>."
    assert render_text(["a", "\n", "b"], [False, False, True]) == "a\\n<<b>>"
    # A literal << cannot pass for a mark.
    assert render_text(["x", " <<", " y"], [False, False, True]) == "x < < <<y>>"


def test_answers_are_read_by_number_and_strictly():
    assert parse_answer("1: yes\n2: no\n3: Yes.", 3) == [True, False, True]
    assert parse_answer("Here you go:\n2: no\n1: yes\n", 2) == [True, False]  # prose ignored, order free
    assert parse_answer("**1:** yes\n- 2) NO", 2) == [True, False]
    got = parse_answer("1: yes\n1: no\n3: maybe\n4: yes, because it mentions foxes", 4)
    assert got[0] == "the answer had two lines for this text"
    assert got[1] == "the answer had no line for this text"
    assert "not yes or no" in got[2] and "not yes or no" in got[3]
    assert parse_answer("yes\nno", 2) == ["the answer had no line for this text"] * 2
    assert parse_answer("7: yes", 2) == ["the answer had no line for this text"] * 2


# -- the LLM judge against the stub ---------------------------------------------------------

TEXTS = [
    ["The", " fox", " ran", "."],
    ["A", " table", " stood", "."],
    ["Two", " leopards", " slept", "."],
    ["Rain", " fell", "."],
    ["The", " fox", " hid", "."],
    ["Chairs", " and", " tables", "."],
    ["A", " leopard", " hunted", "."],
]
ANIMAL_TEXTS = {0, 2, 4, 6}


def judge_requests(stub):
    return [r for r in stub.requests if JudgeResponder.is_judge_prompt(r)]


def test_seven_texts_in_batches_of_five_are_two_calls(make_backend):
    with StubOpenAI(JudgeResponder()) as stub:
        run = judge(make_backend(stub.base_url), "stub-model", "fox and leopard", TEXTS, batch_size=5)
        assert stub.calls() == 2
        shown = [("\n" + r.last_user_message).count("\nText ") for r in stub.requests]
        assert sorted(shown) == [2, 5]
    assert run.answers == [i in ANIMAL_TEXTS for i in range(len(TEXTS))]
    assert run.failures == []
    assert run.usage.llm_calls == 2 and run.usage.prompt_tokens > 0
    # The stub returns top logprobs: yes has 0.9 where the answer is yes.
    assert run.probabilities == [pytest.approx(0.9 if i in ANIMAL_TEXTS else 0.1) for i in range(len(TEXTS))]
    body = stub.requests[0].body
    assert body["temperature"] == 0.0 and body["top_logprobs"] == 5


def test_an_unusable_answer_is_retried_once_then_listed_never_a_no(make_backend):
    responder = JudgeResponder()

    def handler(request):
        # Text 2 of every batch gets "maybe"; the rest are answered properly.
        lines = [f"{n}: {'maybe' if n == 2 else ('yes' if yes else 'no')}" for n, yes in responder.verdicts(request)]
        return chat_body(request, "\n".join(lines))

    with StubOpenAI(handler) as stub:
        run = judge(make_backend(stub.base_url), "stub-model", "fox and leopard", TEXTS, batch_size=5)
        # Batches [0..4] and [5, 6] fail texts 1 and 6; the retry batch [1, 6] fails its text 2 (= 6).
        assert stub.calls() == 3
        retry = stub.requests[-1].last_user_message
        assert "could not be used" in retry and "Text 3" not in retry
    assert [f.index for f in run.failures] == [6]
    assert "unusable answer after 2 attempts" in run.failures[0].reason
    assert run.answers[6] is None and run.probabilities[6] is None
    assert run.answers[1] is False  # answered in the retry
    assert run.answers[:6] == [i in ANIMAL_TEXTS for i in range(6)]


def test_a_backend_error_fails_only_its_batch(make_backend):
    responder = JudgeResponder()

    def handler(request):
        if "Text 3:" not in request.last_user_message:  # the second batch has two texts
            return StubReply(status=400, body=error_body("context length exceeded", "invalid_request_error"))
        return responder(request)

    with StubOpenAI(handler) as stub:
        run = judge(make_backend(stub.base_url, max_retries=0), "stub-model", "fox", TEXTS, batch_size=5)
        assert stub.calls() == 2  # a 400 is not retried, by the backend or the judge
    assert [f.index for f in run.failures] == [5, 6]
    assert all("backend error" in f.reason for f in run.failures)
    assert run.answers[:5] == [True, False, False, False, True]


def test_a_server_that_refuses_logprobs_is_asked_without_them(make_backend):
    responder = JudgeResponder()

    def handler(request):
        if request.body.get("logprobs"):
            return StubReply(status=400, body=error_body("logprobs are not supported with this model"))
        return responder(request)

    with StubOpenAI(handler) as stub:
        run = judge(make_backend(stub.base_url), "stub-model", "fox", TEXTS[:3], batch_size=5)
        assert stub.calls() == 2
    assert run.answers == [True, False, False]
    assert run.probabilities == [None, None, None]


def test_answers_are_cached_per_text(make_backend):
    cache = SQLiteCache(":memory:")
    with StubOpenAI(JudgeResponder()) as stub:
        backend = make_backend(stub.base_url)
        first = judge(backend, "stub-model", "fox", TEXTS, batch_size=5, cache=cache)
        calls = stub.calls()
        again = judge(backend, "stub-model", "fox", TEXTS, batch_size=5, cache=cache)
        assert stub.calls() == calls
        marked = judge(backend, "stub-model", "fox", TEXTS[:1], cache=cache, highlights=[[False, True, False, False]])
        assert stub.calls() == calls + 1  # marks are part of the question
    assert again.answers == first.answers and again.usage.cache_hits == len(TEXTS)
    assert again.probabilities == first.probabilities
    assert marked.answers == [True]


def test_highlights_are_shown_and_judged(make_backend):
    with StubOpenAI(JudgeResponder()) as stub:
        run = judge(
            make_backend(stub.base_url),
            "stub-model",
            "fox",
            [TEXTS[0], TEXTS[0]],
            highlights=[[False, True, False, False], [False, False, True, False]],
        )
        question = stub.requests[0].last_user_message
        system = stub.requests[0].messages[0]["content"]
    assert "Text 1: The <<fox>> ran." in question and "Text 2: The fox <<ran>>." in question
    assert "<<like this>>" in system
    assert run.answers == [True, False]


def test_highlights_must_fit_the_texts(stub_backend):
    with pytest.raises(ValueError):
        judge(stub_backend, "m", "fox", [TEXTS[0]], highlights=[[True]])


# -- the offline judge ----------------------------------------------------------------------


class ScriptedSimulator:
    """Predicts from a function of the tokens; fails the texts listed in `fail`."""

    name, model = "scripted", None

    def __init__(self, predict, fail=()):
        self.predict, self.fail = predict, set(fail)

    def simulate(self, explanation, texts, *, deadline=None):
        sims, failures = [], []
        for i, tokens in enumerate(texts):
            if i in self.fail:
                sims.append(None)
                failures.append(TextFailure(i, "scripted failure"))
            else:
                sims.append(SequenceSimulation(list(tokens), [float(v) for v in self.predict(tokens)]))
        return SimulationRun(sims, failures, Usage())


def fox_predictor(tokens):
    return [9.0 if t.strip().lower() in ("fox", "leopard", "leopards") else 0.0 for t in tokens]


def test_offline_judge_answers_from_the_highest_prediction():
    sim = ScriptedSimulator(fox_predictor, fail=[3])
    run = judge_offline("fox", TEXTS, simulator=sim)
    assert run.answers == [True, False, True, None, True, False, True]
    assert [f.index for f in run.failures] == [3]
    assert run.probabilities == [None] * len(TEXTS) and run.usage.llm_calls == 0
    low = ScriptedSimulator(lambda tokens: [0.5] * len(tokens))
    assert judge_offline("fox", TEXTS[:2], simulator=low).answers == [False, False]
    assert judge_offline("fox", TEXTS[:2], simulator=low, threshold=0.5).answers == [True, True]


def test_offline_marks_fit_when_high_on_the_marks_and_off_elsewhere():
    assert marks_fit([0, 1, 0, 0], [0, 1, 0, 0])
    assert not marks_fit([0, 0, 1, 0], [0, 1, 0, 0])  # marks on the wrong token
    assert marks_fit([0, 1, 1, 0], [0, 1, 0, 0])  # half the marks high, all the highs marked
    assert not marks_fit([0, 1, 0, 0], [1, 1, 1, 1])  # lit everywhere: the marks say nothing
    assert not marks_fit([0, 0, 0, 0], [0, 0, 0, 0])
    sim = ScriptedSimulator(fox_predictor)
    run = judge_offline("fox", [TEXTS[0], TEXTS[0]], simulator=sim, highlights=[[0, 1, 0, 0], [1, 0, 0, 0]])
    assert run.answers == [True, False]


def test_the_real_offline_simulator_judges_plain_matches():
    from scorer.simulators.offline import OfflineSimulator

    judge_ = OfflineJudge(OfflineSimulator())
    run = judge_("the word 'fox'", TEXTS)
    assert run.answers == [True, False, False, False, True, False, False]
    assert judge_.offline and judge_.name == "offline" and judge_.model == "lexical"


# -- fuzzing marks and the two classes ----------------------------------------------------------


def records_of(*values_lists):
    return [ActivationRecord([f"t{j}" for j in range(len(v))], list(v)) for v in values_lists]


def test_fuzzing_marks_are_seeded_and_fair():
    records = records_of(
        [0, 5, 0, 0, 6, 0], [4, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 10, 0], [0, 8, 9, 0, 0, 0], [1, 0, 0]
    )
    plan = plan_marks(records, cut=3.0, random_fraction=0.5, seed=0)
    assert sorted(plan) == [0, 1, 3, 4]  # activating texts only (max >= 3)
    assert plan == plan_marks(records, cut=3.0, random_fraction=0.5, seed=0)
    kinds = [kind for kind, _ in plan.values()]
    assert kinds.count(RANDOM) == 2 and kinds.count(CORRECT) == 2
    for i, (kind, marks) in plan.items():
        truly = [v >= 3.0 for v in records[i].values]
        assert sum(marks) == sum(truly)  # as many marks either way
        if kind == CORRECT:
            assert marks == truly
        else:
            assert not any(m and t for m, t in zip(marks, truly))
    other_seeds = {tuple(sorted(i for i, (k, _) in plan_marks(records, 3.0, 0.5, s).items() if k == RANDOM)) for s in range(20)}
    assert len(other_seeds) > 1


def test_fuzzing_needs_two_activating_texts_with_room_for_random_marks():
    with pytest.raises(ScorerInputError, match="at least 2 activating texts"):
        plan_marks(records_of([0, 5], [0, 0]), 1.5, 0.5, 0)
    with pytest.raises(ScorerInputError, match="none can be marked at random"):
        plan_marks(records_of([5, 5], [4, 6]), 1.5, 0.5, 0)
    # One text with room is enough for the random side.
    plan = plan_marks(records_of([5, 5], [4, 0]), 1.5, 0.9, 0)
    assert plan[1][0] == RANDOM and plan[0][0] == CORRECT


def test_the_classes_come_from_a_fraction_of_the_request_max():
    labels, cut = split_classes(records_of([0, 10], [0, 3], [2.9, 0]), 0.3, "detection")
    assert cut == pytest.approx(3.0) and labels == [True, True, False]
    with pytest.raises(ScorerInputError) as info:
        split_classes(records_of([0, 10], [0, 3]), 0.3, "detection")
    message = str(info.value)
    assert "detection needs both activating and non-activating texts" in message
    assert "add texts whose max activation is below 3" in message
    with pytest.raises(ScorerInputError, match="no value is above 0"):
        split_classes(records_of([0, 0], [-1, 0]), 0.3, "embedding")


class FixedJudge:
    name, model, offline = "fixed", None, True

    def __init__(self, answers):
        self.answers = answers
        self.seen = []

    def __call__(self, condition, texts, *, highlights=None, deadline=None):
        self.seen.append((list(texts), highlights))
        answers = list(self.answers[: len(texts)])
        failures = [TextFailure(i, "no answer") for i, a in enumerate(answers) if a is None]
        return JudgeRun(answers, failures, Usage(llm_calls=1), [None] * len(texts))


def test_detection_leaves_failed_answers_out_and_reports_them():
    records = records_of([0, 9], [5, 0], [0, 1], [0, 0])
    result = DetectionScorer(FixedJudge([True, None, False, True])).score("x", records)
    # Answered: text 0 (activating, yes), 2 (non, no), 3 (non, yes) -> TPR 1, TNR 1/2.
    assert result.score == pytest.approx(0.75)
    assert [f.index for f in result.failures] == [1]
    assert [t["correct"] for t in result.per_text] == [True, None, True, False]
    assert result.per_text[1]["answer"] is None and result.per_text[1]["label"] == "activating"
    assert result.details["texts_scored"] == 3
    assert result.details["counts"] == {"true_positive": 1, "false_negative": 0, "true_negative": 1, "false_positive": 1}


def test_fuzzing_reports_failures_by_the_request_s_index():
    records = records_of([0, 0], [0, 9, 0], [0, 0, 0], [7, 0, 0])
    judge_ = FixedJudge([None, True])
    result = FuzzingScorer(judge_).score("x", records)
    texts, highlights = judge_.seen[0]
    assert len(texts) == 2 and len(highlights) == 2
    assert [f.index for f in result.failures] == [1]
    assert result.per_text[0]["marking"] is None and result.per_text[2]["answer"] is None


def test_scorers_hold_what_judged():
    judge_ = LLMJudge(object(), "stub-model")
    assert DetectionScorer(judge_).scored_by == {"name": "object", "model": "stub-model", "offline": False}


def test_the_backend_embeds_unit_rows_and_skips_blank_texts(make_backend):
    from tests.stub_openai import EMBEDDINGS_PATH

    with StubOpenAI() as stub:
        result = make_backend(stub.base_url).embed(["a fox", "  ", "the fox"], "stub-embed")
        sent = [r.body for r in stub.requests if r.path == EMBEDDINGS_PATH]
    assert len(sent) == 1 and sent[0]["input"] == ["a fox", "the fox"] and sent[0]["encoding_format"] == "float"
    assert result.vectors.shape[0] == 3 and not result.vectors[1].any()
    assert np.linalg.norm(result.vectors[0]) == pytest.approx(1.0)
    assert float(result.vectors[0] @ result.vectors[2]) == pytest.approx(1.0)
    assert result.usage.llm_calls == 1 and result.usage.prompt_tokens > 0 and not result.usage.estimated


def test_local_embedding_stops_at_the_deadline_between_chunks():
    import time as _time

    from llm.errors import DeadlineExceeded
    from llm.text_embedder import LocalTextEmbedder

    class SlowModel:
        name = "slow"
        calls = 0

        def embed(self, texts):
            SlowModel.calls += 1
            _time.sleep(0.05)
            return np.ones((len(texts), 3), dtype=np.float32)

    embedder = LocalTextEmbedder(SlowModel())
    with pytest.raises(DeadlineExceeded):
        embedder.embed(["text"] * 200, deadline=_time.monotonic() + 0.12)
    assert SlowModel.calls < 200 // 16  # stopped early, not after every chunk
