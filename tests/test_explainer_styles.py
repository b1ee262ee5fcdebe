"""The five prompt styles: exact layouts (golden files) and the selection they all share.

A golden file holds one style's whole prompt for FIXED_RECORDS; any change of layout or
wording shows up as a diff. After an intended change, regenerate with
`UPDATE_GOLDEN=1 python -m pytest tests/test_explainer_styles.py` and read the diff.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from explainer.errors import PromptTooLong, UnknownStyle
from explainer.explain import explain
from explainer.records import (
    ActivationRecord,
    dedupe,
    neuron_max,
    normalize,
    select_top,
    split_explain_heldout,
    trim_to_window,
)
from explainer.styles import STYLES, get_style
from explainer.styles.base import render_token
from llm.tokens import count_message_tokens

GOLDEN = Path(__file__).parent / "golden"

# A small neuron with what the layouts must get right: GPT-2 leading spaces, a newline
# and a tab token, a whitespace-only high token, a duplicated text, a text whose values
# all round to 0 (and a negative value), few enough high tokens (< 20%) that the original
# style repeats them.
FIXED_RECORDS = [
    {"tokens": ["The", " cat", " sat", " on", " the", " mat", ".", "\n", "It", " was", " warm", " and",
                " quiet", " in", " the", " old", " house", "."],
     "values": [0, 3.0, 0, 0, 0, 2.0, 0, 0, 0, 0, 0.4, 0, 0, 0, 0, 0, 0, 0]},
    {"tokens": [" A", " dog", " chased", " the", " cat", " home", "."],
     "values": [0, 2.4, 0, 0, 2.7, 0, 0]},
    {"tokens": [" A", " dog", " chased", " the", " cat", " home", "."],
     "values": [0, 2.4, 0, 0, 2.7, 0, 0]},
    {"tokens": ["Birds", "\t", "sing", " \"", "loud", "\""],
     "values": [1.2, 0.9, 0, 0, 0, 0]},
    {"tokens": ["No", " animals", " here", ",", " only", " rain", "."],
     "values": [0, 0.2, -0.5, 0, 0, 0, 0]},
]


def render_messages(messages: list[dict]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}\n" for m in messages)


def final_user(style: str, **options) -> str:
    return explain(FIXED_RECORDS, style=style, dry_run=True, **options).messages[-1]["content"]


@pytest.mark.parametrize("style", sorted(STYLES))
def test_prompt_matches_golden(style):
    result = explain(FIXED_RECORDS, style=style, dry_run=True)
    text = render_messages(result.messages)
    path = GOLDEN / f"explain_{style}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert result.prompt_tokens == count_message_tokens(result.messages)


def test_registry_and_unknown_style():
    assert set(STYLES) == {"original", "summary", "highlight", "highlight_summary", "avhs"}
    for name, style in STYLES.items():
        assert get_style(name) is style and style.name == name
    with pytest.raises(UnknownStyle, match="choose one of") as info:
        get_style("fancy")
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownStyle):
        explain(FIXED_RECORDS, style="Summary", dry_run=True)


def test_messages_alternate_and_end_with_the_prefix():
    for name in STYLES:
        messages = explain(FIXED_RECORDS, style=name, dry_run=True).messages
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * 3 + ["user"]
        assert messages[-1]["content"].endswith("neuron 4: the main thing this neuron does is find")


def _bracketed(text: str) -> set[str]:
    return set(re.findall(r"\[([^\]]+)\]", text))


def _listed(text: str) -> set[str]:
    line = text.split("Highly activating tokens: ", 1)[1].split("\n", 1)[0]
    return {re.sub(r" \(\d+\)$", "", item) for item in line.split(", ")}


def _repeated(text: str) -> set[str]:
    tail = text.split("once more:\n", 1)[1]
    return {line.split("\t")[0].strip() for line in tail.splitlines() if "\t" in line}


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (1, {"cat", "mat", "warm", "dog", "Birds", "\\t"}),
        (4, {"cat", "mat", "dog", "Birds"}),
        (9, {"cat"}),
    ],
)
def test_one_threshold_marks_the_same_tokens_in_every_style(threshold, expected):
    # Normalised (max 3.0): cat 10 and 9, dog 8, mat 6, Birds 4, tab 3, warm 1.
    assert _bracketed(final_user("highlight", threshold=threshold)) == expected
    for style in ("summary", "highlight_summary", "avhs"):
        assert _listed(final_user(style, threshold=threshold)) == expected
    for style in ("highlight_summary", "avhs"):
        assert _bracketed(final_user(style, threshold=threshold)) == expected
    assert _repeated(final_user("original", threshold=threshold)) == expected
    system = explain(FIXED_RECORDS, style="summary", dry_run=True, threshold=threshold).messages[0]
    assert f"scores {threshold} or more" in system["content"]


def test_original_repeats_high_lines_only_when_sparse():
    sparse = final_user("original")
    assert "once more:" in sparse
    dense = [{"tokens": ["a", " b", " c"], "values": [1.0, 2.0, 0.0]}]
    assert "once more:" not in explain(dense, style="original", dry_run=True).messages[-1]["content"]


def test_duplicate_texts_are_shown_once():
    for style in STYLES:
        text = final_user(style)
        assert text.count("dog") == (2 if style == "original" else 1) + (
            1 if "Highly" in text else 0
        )
    assert len(dedupe([ActivationRecord(**r) for r in FIXED_RECORDS])) == 4
    assert explain(FIXED_RECORDS, dry_run=True).texts_shown == 4


def test_dedupe_keeps_the_strongest_copy():
    weak = ActivationRecord(["x", "y"], [0.0, 1.0])
    strong = ActivationRecord(["x", "y"], [0.0, 2.0])
    assert dedupe([weak, strong]) == [strong]


def test_top_texts_are_ranked_and_counted():
    records = [ActivationRecord([f"t{i}"], [float(v)]) for i, v in enumerate([1, 5, 3, 5, 2])]
    top = select_top(records, 3)
    assert [r.tokens[0] for r in top] == ["t1", "t3", "t2"]  # ties keep the caller's order
    assert explain(records, top_k=2, dry_run=True).texts_shown == 2
    with pytest.raises(ValueError):
        select_top(records, 0)


def test_max_activation_is_honoured():
    assert neuron_max([ActivationRecord(["a"], [2.0])]) == 2.0
    assert neuron_max([ActivationRecord(["a"], [2.0])], 8.0) == 8.0
    # cat is 3.0 raw: 10 on the texts' own scale, 5 against a caller's maximum of 6.
    assert " cat\t10" in final_user("original")
    text = final_user("original", max_activation=6.0)
    assert " cat\t5" in text and " cat\t10" not in text
    assert explain(FIXED_RECORDS, max_activation=6.0, dry_run=True).max_activation == 6.0
    # A maximum below the texts' caps at 10.
    assert " cat\t10" in final_user("original", max_activation=1.0)
    assert " dog\t10" in final_user("original", max_activation=1.0)


def test_tokens_are_rendered_faithfully():
    assert render_token(" fox") == " fox"
    assert render_token("\n") == "\\n" and render_token("a\tb") == "a\\tb"
    assert render_token("\r\x00\x85\u2028") == "\\r\\x00\\x85\\u2028"
    original = final_user("original")
    # Every line between <start> and <end> is exactly one token<TAB>value pair.
    body = original.split("<start>\n", 1)[1].split("\n<end>", 1)[0]
    assert all(re.fullmatch(r"[^\t]*\t\d+", line) for line in body.splitlines())
    assert "\\n\t0" in original and "\\t\t3" in original
    highlight = final_user("highlight")
    assert "The [cat] sat" in highlight  # leading space outside the brackets
    assert "[Birds][\\t]sing" in highlight  # a whitespace-only token bracketed whole
    assert highlight.count("Excerpt ") == 4  # one line per excerpt, newlines escaped


def test_trim_to_window_keeps_the_maximum_and_its_context():
    record = ActivationRecord([f"t{i}" for i in range(200)], [0.0] * 150 + [5.0] + [0.0] * 49)
    trimmed = trim_to_window(record, 64)
    assert len(trimmed.tokens) == 64 and "t150" in trimmed.tokens
    assert trimmed.tokens.index("t150") == 48  # three quarters of the window before it
    assert trim_to_window(record, 500) is record
    edge = ActivationRecord([f"t{i}" for i in range(100)], [9.0] + [0.0] * 99)
    assert trim_to_window(edge, 10).tokens[0] == "t0"


def long_neuron():
    records = []
    for n in range(5):
        tokens = [f" w{n}_{i}" for i in range(127)]
        values = [0.0] * 127
        values[100] = 5.0 - n
        records.append({"tokens": tokens, "values": values})
    return records


def test_budget_trims_texts_before_dropping_them():
    records = long_neuron()
    full = explain(records, style="original", dry_run=True)
    budget = full.prompt_tokens - 200
    fitted = explain(records, style="original", dry_run=True, token_budget=budget)
    assert fitted.prompt_tokens <= budget
    assert fitted.texts_shown == 5
    assert " w0_100\t10" in fitted.messages[-1]["content"]
    assert " w0_0\t" not in fitted.messages[-1]["content"]  # cut: far from the maximum


def test_budget_drops_the_weakest_texts_then_refuses():
    records = long_neuron()
    one_text = explain(records[:1], style="original", dry_run=True, token_budget=10**6)
    small = one_text.prompt_tokens + 10  # room for about one 127-token text, trimmed
    fitted = explain(records, style="original", dry_run=True, token_budget=small)
    assert fitted.prompt_tokens <= small
    assert 1 <= fitted.texts_shown < 5
    content = fitted.messages[-1]["content"]
    assert " w0_100" in content and " w4_100" not in content  # the strongest stays
    with pytest.raises(PromptTooLong) as info:
        explain(records, style="original", dry_run=True, token_budget=50)
    assert isinstance(info.value, ValueError)


def test_split_explain_heldout():
    records = [ActivationRecord([f"t{i}"], [float(10 - i)]) for i in range(8)]
    rand = [ActivationRecord(["r"], [0.0]), ActivationRecord(["t0"], [10.0])]
    explain_part, heldout = split_explain_heldout(records + records[:2], top_k=5, random_records=rand)
    assert [r.tokens[0] for r in explain_part] == ["t0", "t1", "t2", "t3", "t4"]
    assert [r.tokens[0] for r in heldout] == ["t5", "t6", "t7", "r"]  # a repeat of t0 is left out
    few, rest = split_explain_heldout(records[:3], top_k=5)
    assert len(few) == 2 and len(rest) == 1  # one top text held out when there are few
    _, capped = split_explain_heldout(records, top_k=2, max_heldout=2)
    assert [r.tokens[0] for r in capped] == ["t2", "t3"]
    alone, none = split_explain_heldout(records[:1], top_k=5)
    assert len(alone) == 1 and none == []


def test_normalize_scale():
    scaled = normalize([ActivationRecord(["a", "b", "c"], [3.0, 1.5, -1.0])], 3.0)[0]
    assert scaled.values == (10, 5, 0)


def test_list_items_with_a_comma_are_quoted():
    records = [{"tokens": ["a", " ,", " b", "),"], "values": [0.0, 2.0, 1.0, 2.0]}]
    text = explain(records, style="summary", dry_run=True).messages[-1]["content"]
    assert 'Highly activating tokens: ",", "),", b' in text
