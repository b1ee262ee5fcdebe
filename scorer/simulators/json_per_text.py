"""`json`: one chat call per text in JSON mode, the semantics of Neuronpedia's production scorer.

The model gets the explanation, the document and its tokens with blank
activations, and answers with every token and an activation 0-10. Kept for
comparability with Neuronpedia's scores; it pays the instructions once per text
and echoes every token, so `batched` is the cheap default.

Predictions are read by position (the echoed token text is not compared: models
rewrite unusual tokens), clamped to 0-10, and a wrong count or unreadable JSON
earns one retry and then a reported failure, never zeros.
"""
from __future__ import annotations

import json
import re
from typing import Any

from llm.answers import PromptEcho
from llm.backend import Completion
from llm.tokens import count_message_tokens
from scorer.simulation import SequenceSimulation
from scorer.simulators.prompts import (
    FEW_SHOT_EXAMPLES,
    QUOTED_NOTE,
    ParseError,
    PerTextSimulator,
    clean_explanation,
    parse_activation,
    rejection_note,
)

SYSTEM_PROMPT = """We're studying neurons in a neural network. Each neuron looks for certain things in a short document. Read the explanation of what the neuron does and predict the neuron's activation on each token of the document: an integer from 0 (not firing) to 10 (firing strongly). Most activations are 0. """ + QUOTED_NOTE + """

You get a JSON object with the explanation, the document, and the document's tokens in order under "activations", each with its "token" and a null "activation". Answer with a JSON object {"activations": [...]} that lists the same tokens verbatim, in the same order, one entry per token, each with its "activation" filled in. Pay attention to the context and order of words the explanation describes."""

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def _question(explanation: str, tokens: list[str] | tuple[str, ...]) -> str:
    return json.dumps(
        {
            "explanation": explanation,
            "document": "".join(tokens),
            "activations": [{"token": t, "activation": None} for t in tokens],
        },
        ensure_ascii=False,
    )


def _answer(tokens: tuple[str, ...], activations: tuple[int, ...]) -> str:
    return json.dumps(
        {"activations": [{"token": t, "activation": a} for t, a in zip(tokens, activations)]},
        ensure_ascii=False,
    )


def build_messages(explanation: str, tokens: list[str], rejection: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example in FEW_SHOT_EXAMPLES:
        for text in example.texts:
            messages.append({"role": "user", "content": _question(example.explanation, text.tokens)})
            messages.append({"role": "assistant", "content": _answer(text.tokens, text.activations)})
    messages.append(
        {
            "role": "user",
            "content": _question(clean_explanation(explanation), tokens) + rejection_note(rejection),
        }
    )
    return messages


# Characters an answer may take per token before it is not read: an entry is about 40
# characters, a long token a few hundred.
_CHARS_PER_TOKEN = 400
_MAX_DIGITS = 30  # an integer literal longer than this is no activation


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > _MAX_DIGITS:
        raise ParseError("a number of too many digits to be an activation")
    return int(literal)


def _no_constant(name: str) -> Any:
    raise ParseError(f"{name} is not a number")


def _loads(candidate: str) -> Any:
    return json.loads(candidate, parse_int=_bounded_int, parse_constant=_no_constant)


def parse_answer(text: str, n_tokens: int) -> list[float]:
    """One activation per token, by position; ParseError if the answer does not say that."""
    if len(text) > _CHARS_PER_TOKEN * n_tokens + 2000:
        raise ParseError(f"the answer is {len(text)} characters long for {n_tokens} tokens")
    body = _FENCE.sub("", text.strip())
    start, end = body.find("{"), body.rfind("}")
    candidate = body[start : end + 1] if 0 <= start < end else body
    try:
        try:
            data: Any = _loads(candidate)
        except ParseError:
            raise
        except ValueError:
            data = _loads(body)
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the answer's JSON is nested too deeply") from None
    except ValueError:
        raise ParseError("the answer is not valid JSON") from None
    items = data.get("activations") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ParseError('the answer has no "activations" list')
    if len(items) != n_tokens:
        raise ParseError(f"{len(items)} activations for {n_tokens} tokens")
    values = []
    for i, item in enumerate(items):
        raw = item.get("activation") if isinstance(item, dict) else item
        try:
            values.append(parse_activation(raw))
        except ParseError as exc:
            raise ParseError(f"activations[{i}]: {exc}") from None
    return values


class JsonPerTextSimulator(PerTextSimulator):
    name = "json"
    version = "2"  # 2: the explanation shown as quoted data

    def _prompt_tokens(self, explanation: str, tokens: list[str]) -> int:
        return count_message_tokens(build_messages(explanation, tokens))

    def _request(self, explanation, tokens, rejection, deadline, *, budget=1.0) -> Completion:
        return self.backend.chat(
            build_messages(explanation, tokens, rejection),
            model=self.model,
            temperature=0.0,
            # An entry costs about 12 tokens; leave room, the limit is not the cost.
            max_tokens=self._output_budget(16 * len(tokens) + 200, budget),
            json_mode=True,
            deadline=deadline,
        )

    def _echo(self, explanation, tokens, rejection) -> PromptEcho:
        # A model may answer with the whole question object, activations filled in: only
        # the instructions and the examples count as an echo (the question alone has nulls).
        return PromptEcho.of_messages(build_messages(explanation, tokens, rejection), question_lines=False)

    def _parse(self, completion: Completion, tokens: list[str]) -> SequenceSimulation:
        return SequenceSimulation(
            tokens=list(tokens), expected_activations=parse_answer(completion.text, len(tokens))
        )
