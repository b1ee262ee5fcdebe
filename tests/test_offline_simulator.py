"""The offline simulator: what it promises without an LLM, a network or a key."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from llm.embeddings import LocalEmbedder, unavailable_reason
from llm.errors import DeadlineExceeded
from scorer.simulators.base import SimulationRun
from scorer.simulators.offline import (
    REFERENCE_WORDS,
    Literal,
    OfflineSimulator,
    group_words,
    literal_strength,
    parse_explanation,
    similarity_strength,
    stem,
)

MODEL_MISSING = unavailable_reason()

SENTENCE = ["The", " time", " has", " come", ",", " the", " Walrus", " said", "."]


def predict(explanation: str, tokens: list[str], embedder=None) -> list[float]:
    run = OfflineSimulator(embedder=embedder).simulate(explanation, [tokens])
    return run.simulations[0].expected_activations


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    if MODEL_MISSING:
        pytest.skip(f"semantic matching needs the packaged MiniLM model: {MODEL_MISSING}")
    return LocalEmbedder()


@pytest.fixture(params=["lexical", "semantic"])
def simulator(request) -> OfflineSimulator:
    if request.param == "lexical":
        return OfflineSimulator(embedder=None)
    return OfflineSimulator(embedder=request.getfixturevalue("embedder"))


# -- explanation parsing -------------------------------------------------------------


def test_quoted_words_in_any_quote_style_are_literals():
    for explanation in ('the word "time"', "the word 'time'", "the word “time”", "the word `time`"):
        assert parse_explanation(explanation).literals == (Literal("time"),), explanation


def test_listed_tokens_are_literals():
    assert [l.text for l in parse_explanation("'chapter' and 'on'").literals] == ["chapter", "on"]
    assert [l.text for l in parse_explanation('the tokens "of", "in"').literals] == ["of", "in"]
    numbers = parse_explanation("instances of the numbers 2, 4, and 5")
    assert [l.text for l in numbers.literals] == ["2", "4", "5"]
    assert [l.text for l in parse_explanation("the word time").literals] == ["time"]


def test_apostrophes_and_descriptions_are_not_quotes_or_lists():
    assert parse_explanation("a character's motivation").literals == ()
    assert parse_explanation("the words describing motion").literals == ()


def test_position_words_move_a_quoted_token():
    assert parse_explanation('the token after "of"').literals == (Literal("of", 1),)
    assert parse_explanation('words preceded by the word "in"').literals == (Literal("in", 1),)
    assert parse_explanation('words followed by "a"').literals == (Literal("a", -1),)


def test_categories_named_by_the_explanation():
    assert "number" in parse_explanation("numbers and digits").categories
    assert "year" in parse_explanation("years").categories
    assert "punctuation" in parse_explanation("punctuation").categories
    assert parse_explanation("commas").marks == frozenset(",")
    assert parse_explanation("time periods").marks == frozenset()
    assert parse_explanation("fast animals").categories == frozenset()


def test_stem_relates_word_forms():
    assert stem("running") == stem("run") == stem("runs") == stem("Running")
    assert stem("cities") == stem("city")
    assert stem("danced") == stem("dance") == stem("dancing")
    assert stem("falling") == stem("fall")


def test_group_words_glues_gpt2_pieces():
    words = group_words([" sad", "der", " G", "iles", ".", " there", "âĢ", "Ļ", "s", "<|endoftext|>"])
    assert ("sadder", [0, 1]) in words and ("Giles", [2, 3]) in words and ("there", [5]) in words
    assert all("endoftext" not in w and "âĢ" not in w for w, _ in words)


def test_literal_strength_levels():
    assert literal_strength(" Time", "time") == 1.0
    assert 0.0 < literal_strength(" times", "time") < 1.0
    assert literal_strength(" timer", "time") == 0.0 and literal_strength(" tame", "time") == 0.0
    assert literal_strength(" ", " ") == 1.0 and literal_strength("\n", " ") == 0.0


def test_similarity_strength_is_relative_to_everyday_words():
    reference = np.array([0.10, 0.12, 0.15, 0.18, 0.20, 0.22, 0.25])
    out = similarity_strength(np.array([0.05, 0.2, 0.5, 0.9]), reference)
    assert out[0] == 0.0 and out[1] == 0.0
    assert 0.0 <= out[2] <= out[3] == 1.0
    assert similarity_strength(np.array([0.5]), np.array([])).tolist() == [0.0]


# -- the simulator's promises, lexical and semantic ------------------------------------


def test_quoted_word_gets_the_top_value_and_the_rest_about_zero(simulator):
    values = simulator.simulate('the word "time"', [SENTENCE]).simulations[0].expected_activations
    assert values[1] == 10.0
    assert max(v for i, v in enumerate(values) if i != 1) <= 1.0


def test_listed_tokens_light_up(simulator):
    tokens = [" The", " chapter", " on", " ships", " is", " in", " chapter", " two"]
    values = simulator.simulate("'chapter' and 'on'", [tokens]).simulations[0].expected_activations
    assert [i for i, v in enumerate(values) if v >= 9] == [1, 2, 6]
    tokens = [" one", " of", " us", " in", " here"]
    values = simulator.simulate('the tokens "of", "in"', [tokens]).simulations[0].expected_activations
    assert values[1] == values[3] == 10.0
    assert values[0] <= 1.0


def test_case_and_word_forms_match(simulator):
    tokens = [" Running", " runs", " run", " ran", " walk", " RUN"]
    values = simulator.simulate('the word "running"', [tokens]).simulations[0].expected_activations
    assert values[0] == 10.0
    assert values[1] >= 7 and values[2] >= 7 and values[5] >= 7
    assert values[4] <= 1.0


def test_quoted_words_match_whole_words_not_pieces(simulator):
    tokens = [" G", "iles", " and", " tim", "ber", " sad", "der"]
    values = simulator.simulate("'Giles', 'time' and 'der'", [tokens]).simulations[0].expected_activations
    assert values[0] == values[1] == 10.0  # " G" + "iles"
    assert values[3] == values[4] == 0.0  # " tim" is a piece of " timber", not a form of "time"
    assert values[6] == 10.0  # a quoted piece matches the piece exactly


def test_number_and_punctuation_categories(simulator):
    tokens = [" In", " 1987", ",", " 12", " people", " left", ".", " (", "ok", ")"]
    numbers = simulator.simulate("numbers", [tokens]).simulations[0].expected_activations
    assert numbers[1] == numbers[3] == 10.0
    assert numbers[0] == numbers[2] == numbers[5] == 0.0
    punct = simulator.simulate("punctuation", [tokens]).simulations[0].expected_activations
    assert {i for i, v in enumerate(punct) if v == 10.0} == {2, 6, 7, 9}
    assert punct[1] == 0.0 and punct[4] == 0.0
    commas = simulator.simulate("commas", [tokens]).simulations[0].expected_activations
    assert {i for i, v in enumerate(commas) if v == 10.0} == {2}
    years = simulator.simulate("years", [tokens]).simulations[0].expected_activations
    assert years[1] == 10.0 and years[1] > years[3]


def test_tokens_come_back_untouched(simulator):
    odd = ["<|endoftext|>", " ", "\n", "\n\n", "ĠĊ", "âĢ", "Ļ", " café", " 東京", "🙂", "", " \t", "...", "'"]
    texts = [odd, list(SENTENCE)]
    before = [list(t) for t in texts]
    run = simulator.simulate('the word "time" and "<|endoftext|>"', texts)
    assert texts == before
    for sim, tokens in zip(run.simulations, before):
        assert sim.tokens == tokens
        assert sim.tokens is not tokens  # a copy: the caller's list is never aliased
    assert run.simulations[0].expected_activations[0] == 10.0


def test_shapes_ranges_and_usage(simulator):
    texts = [SENTENCE, [], [" a"], SENTENCE * 10]
    run = simulator.simulate("words about time and animals", texts)
    assert isinstance(run, SimulationRun)
    assert run.failures == []
    assert len(run.simulations) == len(texts)
    for sim, tokens in zip(run.simulations, texts):
        assert len(sim.expected_activations) == len(tokens)
        for v in sim.expected_activations:
            assert isinstance(v, float) and math.isfinite(v) and 0.0 <= v <= 10.0
    assert run.usage.llm_calls == 0 and run.usage.total_tokens == 0


def test_deterministic(simulator):
    texts = [SENTENCE, [" The", " fox", " ran", " past", " 3", " dogs", "."]]
    first = [s.expected_activations for s in simulator.simulate("fast animals", texts).simulations]
    again = [s.expected_activations for s in simulator.simulate("fast animals", texts).simulations]
    fresh = OfflineSimulator(embedder=None if simulator.model == "lexical" else LocalEmbedder())
    cold = [s.expected_activations for s in fresh.simulate("fast animals", texts).simulations]
    assert first == again == cold


def test_explanation_sensitive(simulator):
    texts = [SENTENCE]
    a = simulator.simulate('the word "time"', texts).simulations[0].expected_activations
    b = simulator.simulate("punctuation", texts).simulations[0].expected_activations
    c = simulator.simulate('the word "Walrus"', texts).simulations[0].expected_activations
    assert a != b and a != c and b != c


def test_explanation_with_nothing_to_match_predicts_zeros(simulator):
    values = simulator.simulate("", [SENTENCE]).simulations[0].expected_activations
    assert values == [0.0] * len(SENTENCE)


def test_deadline_in_the_past_raises(simulator):
    with pytest.raises(DeadlineExceeded):
        simulator.simulate("fast animals", [SENTENCE], deadline=time.monotonic() - 1)


# -- lexical-only fallback ----------------------------------------------------------------


def test_lexical_only_without_an_embedder():
    sim = OfflineSimulator(embedder=None)
    assert sim.model == "lexical" and not sim.semantic
    values = predict("fast animals", [" the", " animals", " were", " fast"])
    assert values[1] > 0 and values[3] > 0 and values[0] == values[2] == 0.0


def test_a_model_that_cannot_load_falls_back_to_lexical(tmp_path):
    broken = LocalEmbedder(model_path=tmp_path / "missing.onnx")
    sim = OfflineSimulator(embedder=broken)
    values = sim.simulate('the word "time" near clocks', [SENTENCE]).simulations[0].expected_activations
    assert values[1] == 10.0
    assert sim.model == "lexical" and not sim.semantic
    assert broken.load_error
    assert OfflineSimulator(embedder=broken).model == "lexical"


class FakeEmbedder:
    """Two-dimensional 'meanings': animal words point one way, the rest the other."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts):
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            animal = any(w in text.casefold() for w in ("animal", "fox", "leopard"))
            angle = 0.2 if animal else 1.2 + (len(text) % 7) * 0.05
            rows.append([math.cos(angle), math.sin(angle)])
        return np.asarray(rows, dtype=np.float32)


def test_semantic_path_uses_the_injected_embedder_on_content_words_only():
    fake = FakeEmbedder()
    sim = OfflineSimulator(embedder=fake)
    assert sim.model == "lexical+fake"
    values = sim.simulate("animals", [[" the", " fox", " at", " table", " leopard", "."]]).simulations[0]
    v = values.expected_activations
    assert v[1] > 0 and v[4] > 0 and v[0] == v[2] == v[3] == v[5] == 0.0
    embedded = {w for call in fake.calls for w in call}
    assert {"fox", "leopard", "table"} <= embedded
    assert not embedded & {"the", "at", "."}


def test_warm_up_embeds_the_reference_words_once():
    fake = FakeEmbedder()
    OfflineSimulator(embedder=fake).warm_up()
    assert fake.calls == [list(REFERENCE_WORDS)]
    OfflineSimulator(embedder=None).warm_up()  # nothing to warm, no error


class FakeWordEmbedder(FakeEmbedder):
    """A FakeEmbedder with a word path and a warm-up, like LocalEmbedder's."""

    def __init__(self) -> None:
        super().__init__()
        self.word_calls: list[list[str]] = []
        self.warmed = 0

    def embed_words(self, words):
        self.word_calls.append(list(words))
        calls, rows = list(self.calls), FakeEmbedder.embed(self, words)
        self.calls = calls  # `embed` used as the vectors, not recorded as a call
        return rows

    def warm_up(self):
        self.warmed += 1


def test_words_and_reference_words_take_the_word_path_and_the_explanation_the_model():
    fake = FakeWordEmbedder()
    sim = OfflineSimulator(embedder=fake)
    values = sim.simulate("animals", [[" the", " fox", " at", " table", " leopard"]]).simulations[0]
    assert values.expected_activations[1] > 0 and values.expected_activations[3] == 0.0
    assert fake.calls == [["animals"]]  # only the explanation goes to `embed`
    assert list(REFERENCE_WORDS) in fake.word_calls
    assert {"fox", "leopard", "table"} <= {w for call in fake.word_calls for w in call}


def test_warm_up_warms_the_embedder_and_embeds_the_reference_words():
    fake = FakeWordEmbedder()
    OfflineSimulator(embedder=fake).warm_up()
    assert fake.warmed == 1 and fake.word_calls == [list(REFERENCE_WORDS)] and fake.calls == []


# -- semantic matching with the packaged model ----------------------------------------------


@pytest.fixture(scope="module")
def embedder_without_table(embedder) -> LocalEmbedder:
    return LocalEmbedder(word_table=False)


@pytest.fixture(params=["table", "no table"])
def any_embedder(request, embedder, embedder_without_table) -> LocalEmbedder:
    """The packaged model with its word table, and without it (every word through the model)."""
    return embedder if request.param == "table" else embedder_without_table


def test_fast_animals_light_up_animals(any_embedder):
    sim = OfflineSimulator(embedder=any_embedder)
    assert sim.model == "lexical+minilm-l6-int8"
    texts = [["the ", " quick", " brown", " fox"], ["spotted ", " leopard", " sprints", " at"],
             [" The", " table", " near", " the", " government", " idea"]]
    run = sim.simulate("fast animals", texts)
    value = {t: v for s in run.simulations for t, v in zip(s.tokens, s.expected_activations)}
    for animal in (" fox", " leopard"):
        for other in (" the", " at", " table", " government", " idea"):
            assert value[animal] > value[other], (animal, other, value)


@pytest.mark.parametrize(
    "explanation, related, unrelated",
    [
        ("colors", [" red", " blue", " green"], [" table", " government", " idea"]),
        ("musical instruments", [" piano", " guitar", " violin"], [" lawyer", " desk", " tax"]),
        ("words related to elections", [" vote", " ballot", " candidate"], [" banana", " river", " piano"]),
    ],
)
def test_semantic_probes(any_embedder, explanation, related, unrelated):
    tokens = related + unrelated
    values = OfflineSimulator(embedder=any_embedder).simulate(explanation, [tokens]).simulations[0]
    value = dict(zip(tokens, values.expected_activations))
    assert min(value[t] for t in related) > max(value[t] for t in unrelated), value


def test_the_word_table_changes_predictions_negligibly(embedder, embedder_without_table):
    texts = [[" The", " fox", " and", " leopard", " chased", " a", " zebra", " past", " the", " table"],
             [" Voters", " cast", " ballots", " in", " the", " election", " on", " Tuesday", "."]]
    for explanation in ("fast animals", "words related to elections", "colors"):
        a = OfflineSimulator(embedder=embedder).simulate(explanation, texts)
        b = OfflineSimulator(embedder=embedder_without_table).simulate(explanation, texts)
        for x, y in zip(a.simulations, b.simulations):
            assert np.allclose(x.expected_activations, y.expected_activations, atol=0.1), explanation


def test_embedder_rows_are_unit_length_and_cached(embedder):
    rows = embedder.embed(["fox", "leopard", "fox", ""])
    assert rows.dtype == np.float32 and rows.shape == (4, 384)
    assert np.allclose(np.linalg.norm(rows[:3], axis=1), 1.0, atol=1e-5)
    assert np.array_equal(rows[0], rows[2]) and not rows[3].any()
    assert np.array_equal(embedder.embed(["fox"])[0], rows[0])


def test_embedder_is_shared_safely_by_threads(embedder):
    from concurrent.futures import ThreadPoolExecutor

    words = [f"{w}{i}" for i in range(12) for w in ("river", "piano", "wolf")]
    expected = LocalEmbedder(cache_entries=0).embed(words)
    small = LocalEmbedder(cache_entries=8)  # tiny, so threads evict each other's entries
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda k: small.embed(words[k:] + words[:k]), range(8)))
    for k, rows in enumerate(results):
        assert np.allclose(rows, np.roll(expected, -k, axis=0), atol=1e-6)
    assert small.cache_size() <= 8


# -- the puzzles: it runs on all of them -------------------------------------------------------


def test_runs_on_every_puzzle(simulator, puzzles):
    assert puzzles
    for puzzle in puzzles.values():
        texts = [[item if isinstance(item, str) else item[0] for item in s] for s in puzzle["sentences"]]
        for explanation in [puzzle["explanation"], *puzzle["false_explanations"]]:
            run = simulator.simulate(explanation, texts)
            assert len(run.simulations) == len(texts) and not run.failures
            for sim, tokens in zip(run.simulations, texts):
                assert sim.tokens == tokens
                assert len(sim.expected_activations) == len(tokens)
                assert all(0.0 <= v <= 10.0 for v in sim.expected_activations)


class FakeTableEmbedder(FakeWordEmbedder):
    """A word table that holds only the words in `known`."""

    def __init__(self, known) -> None:
        super().__init__()
        self.known = set(known)

    def table_has(self, word):
        return word in self.known


def test_words_missing_from_the_table_are_capped_per_request_and_chosen_by_position():
    from scorer.simulators.offline import MAX_MODEL_WORDS

    rare = [f" zq{chr(97 + i // 26)}{chr(97 + i % 26)}word" for i in range(MAX_MODEL_WORDS + 10)]
    tokens = [" fox", " leopard", *rare, " table"]
    fake = FakeTableEmbedder(known={"fox", "leopard", "table"})
    OfflineSimulator(embedder=fake).simulate("animals", [tokens])
    request_words = {w for call in fake.word_calls for w in call} - set(REFERENCE_WORDS)
    unknown = request_words - fake.known
    assert fake.known <= request_words  # table words are never dropped by the cap
    assert unknown == {w.strip() for w in rare[:MAX_MODEL_WORDS]}
    # Same choice on a warm second run: it depends on the request only.
    fake.word_calls.clear()
    OfflineSimulator(embedder=fake).simulate("animals", [tokens])
    assert ({w for call in fake.word_calls for w in call} - set(REFERENCE_WORDS)) == request_words
