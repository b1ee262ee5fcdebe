"""The LLM simulators and the judge show the explanation as quoted data (golden prompts).

A golden file holds one format's whole prompt for EXPLANATION and TOKENS; any change of
layout or wording shows up as a diff. After an intended change, regenerate with
`UPDATE_GOLDEN=1 python -m pytest tests/test_simulator_prompts.py` and read the diff.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from scorer import judge
from scorer.simulators import all_at_once, batched, json_per_text, logprob_ev
from scorer.simulators.prompts import quote_explanation
from tests.stub_openai import unquote

GOLDEN = Path(__file__).parent / "golden"

# Quotes, a backslash and a line break: what a quoted form must escape or fold.
EXPLANATION = 'the word "quick" (or \\quick)\nbefore animals'
QUOTED = '"the word \\"quick\\" (or \\\\quick) before animals"'
TOKENS = ["the", " quick", " brown", " fox"]


def render_messages(messages: list[dict]) -> str:
    return "".join(f"=== {m['role']} ===\n{m['content']}\n" for m in messages)


PROMPTS = {
    "batched": lambda: render_messages(batched.build_messages(EXPLANATION, [TOKENS])),
    "logprob": lambda: render_messages(logprob_ev.build_messages(EXPLANATION, TOKENS)),
    "json": lambda: render_messages(json_per_text.build_messages(EXPLANATION, TOKENS)),
    "all_at_once": lambda: all_at_once.build_prompt(EXPLANATION, TOKENS),
    "judge_detection": lambda: render_messages(
        judge.build_messages(judge.DETECTION, EXPLANATION, [judge.render_text(TOKENS)])
    ),
}


def test_quoted_form_escapes_quotes_and_backslashes_on_one_line():
    assert quote_explanation(EXPLANATION) == QUOTED
    assert unquote(QUOTED) == "the word \"quick\" (or \\quick) before animals"
    # Read back as a JSON string, it is the one-line explanation exactly.
    assert json.loads(QUOTED) == "the word \"quick\" (or \\quick) before animals"


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_prompt_matches_golden(name):
    text = PROMPTS[name]()
    path = GOLDEN / f"simulate_{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["batched", "logprob", "all_at_once", "judge_detection"])
def test_the_explanation_appears_only_quoted(name):
    text = PROMPTS[name]()
    assert QUOTED in text
    assert "(quoted):" in text
    assert EXPLANATION not in text and "\nbefore animals" not in text


def test_json_format_carries_the_explanation_as_a_json_string():
    body = json.loads(json_per_text.build_messages(EXPLANATION, TOKENS)[-1]["content"])
    assert body["explanation"] == "the word \"quick\" (or \\quick) before animals"
