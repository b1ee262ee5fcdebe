"""The judges' prompts, exactly (golden files): detection, fuzzing, holistic, intruder.

A golden file holds one prompt for FIXED_RECORDS; any change of layout or wording shows up
as a diff. After an intended change (and a bump of the prompt's VERSION, which keys the
cache), regenerate with `UPDATE_GOLDEN=1 python -m pytest tests/test_judge_prompts.py` and
read the diff.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.records import ActivationRecord
from llm.tokens import count_message_tokens
from scorer import judge
from scorer.scorers import holistic, intruder
from scorer.scorers.fuzzing import plan_marks

GOLDEN = Path(__file__).parent / "golden"

# What the layouts must get right: GPT-2 leading spaces, a newline and a tab token, a literal
# "<<" in a text, a weak activation beside a strong one, texts that never activate.
FIXED_RECORDS = [
    ActivationRecord(["The", " fox", " ran", " past", " the", " barn", ".", "\n", "It", " was", " fast"],
                     [0, 9.0, 0, 0, 0, 1.2, 0, 0, 0, 0, 3.0]),
    ActivationRecord([" A", " leopard", " chased", " the", " deer", "\t", "home"], [0, 10.0, 0, 0, 4.0, 0, 0]),
    ActivationRecord(["Rain", " fell", " on", " the", " roof", "."], [0, 0, 0, 0, 0.2, 0]),
    ActivationRecord([" x", " <<", " y", " >>", " wolf"], [0, 0, 0, 0, 8.0]),
    ActivationRecord(["Chairs", " and", " a", " table", "."], [0, 0, 0, 0, 0]),
]
EXPLANATION = "wild animals,\n especially hunters"


def render(messages: list[dict]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}\n" for m in messages)


def detection_messages() -> list[dict]:
    rendered = [judge.render_text(r.tokens) for r in FIXED_RECORDS]
    return judge.build_messages(judge.DETECTION, EXPLANATION, rendered)


def fuzzing_messages() -> list[dict]:
    plan = plan_marks(FIXED_RECORDS, cut=3.0, random_fraction=0.5, seed=0)
    rendered = [judge.render_text(FIXED_RECORDS[i].tokens, plan[i][1]) for i in sorted(plan)]
    return judge.build_messages(judge.FUZZING, EXPLANATION, rendered)


def holistic_messages() -> list[dict]:
    shown = holistic.top_texts(FIXED_RECORDS, 12)
    top = max(r.max_value for r in FIXED_RECORDS)
    levels = [holistic.strengths(FIXED_RECORDS[i], top) for i in shown]
    return holistic.build_messages(EXPLANATION, [FIXED_RECORDS[i].tokens for i in shown], levels)


def intruder_messages() -> list[dict]:
    plan = intruder.plan_rounds(FIXED_RECORDS, 0.3, rounds=1, per_round=3, seed=0)
    return intruder.build_messages(FIXED_RECORDS, plan.rounds[0])


PROMPTS = {
    "detection": detection_messages,
    "fuzzing": fuzzing_messages,
    "holistic": holistic_messages,
    "intruder": intruder_messages,
}


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_judge_prompt_matches_golden(name):
    messages = PROMPTS[name]()
    text = render(messages)
    path = GOLDEN / f"judge_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
    assert count_message_tokens(messages) > 0


def test_the_prompts_keep_every_text_on_one_line_and_the_explanation_on_one_line():
    for name in ("detection", "holistic"):
        user = PROMPTS[name]()[-1]["content"]
        assert "wild animals, especially hunters" in user, name
    for name, build in PROMPTS.items():
        user = build()[-1]["content"]
        for line in user.splitlines():
            if line.startswith("Text "):
                assert "\t" not in line, name
    assert "wild animals" not in render(intruder_messages())  # the intruder judge never sees an explanation
