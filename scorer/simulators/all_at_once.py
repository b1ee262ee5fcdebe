"""`all_at_once`: the original method of Bills et al. (2023), on the completions endpoint.

The prompt ends with the text as `token<TAB>unknown` lines. The server echoes the
prompt with the logprobs of every prompt token, and at each `unknown` the top
alternatives say how likely each value 0-10 was in that slot: the prediction is
their expected value. One forward pass scores a whole text and nothing is
generated. OpenAI's API no longer returns prompt logprobs; self-hosted servers
(vLLM) do. A server that returns none gets a clear UpstreamError, not zeros.
"""
from __future__ import annotations

from llm.answers import Truncated
from llm.backend import Completion
from llm.tokens import count_tokens
from scorer.simulation import SequenceSimulation
from scorer.simulators.prompts import (
    EXPLANATION_PREFIX,
    FEW_SHOT_EXAMPLES,
    QUOTED_NOTE,
    LogprobSimulator,
    ParseError,
    digit_distribution,
    expected_value,
    quote_explanation,
    render_token,
    require_top_logprobs,
)

PLACEHOLDER = "unknown"

INSTRUCTIONS = """We're studying neurons in a neural network. Each neuron looks for some particular thing in a short document. Look at the explanation of what a neuron does, and predict how it fires on each token.

Activations are listed as token<tab>activation, from 0 to 10; "unknown" marks an activation to predict. Most activations are 0. """ + QUOTED_NOTE + """
"""


def _neuron_block(number: int, explanation: str, records: list[str]) -> str:
    return (
        f"\nNeuron {number}\n"
        f"Explanation of neuron {number} behavior (quoted): {EXPLANATION_PREFIX} {quote_explanation(explanation)}\n"
        f"Activations:\n" + "".join(records)
    )


def _record(tokens, activations=None) -> str:
    lines = []
    for i, token in enumerate(tokens):
        value = PLACEHOLDER if activations is None else str(activations[i])
        lines.append(f"{render_token(token)}\t{value}\n")
    return "<start>\n" + "".join(lines) + "<end>\n"


def build_prompt(explanation: str, tokens: list[str]) -> str:
    blocks = [INSTRUCTIONS]
    for number, example in enumerate(FEW_SHOT_EXAMPLES, start=1):
        records = [_record(t.tokens, t.activations) for t in example.texts]
        blocks.append(_neuron_block(number, example.explanation, records))
    blocks.append(
        _neuron_block(len(FEW_SHOT_EXAMPLES) + 1, explanation, [_record(tokens)])
    )
    return "".join(blocks)


def parse_answer(completion: Completion, tokens: list[str]) -> SequenceSimulation:
    logprobs = require_top_logprobs(
        completion,
        "the backend returned no prompt logprobs for an echoed completion; the "
        "'all_at_once' format needs a server that does (e.g. vLLM), use 'batched', "
        "'json' or 'logprob' otherwise",
    )
    expected, values, probabilities = [], [], []
    for k, item in enumerate(logprobs):
        if item.token.strip() != PLACEHOLDER:
            continue
        # Rendered tokens carry no raw tab and the examples show numbers, so a
        # tab right before "unknown" marks one of our slots and nothing else.
        prefix = item.token[: item.token.index(PLACEHOLDER)]
        after_tab = "\t" in prefix or (k > 0 and logprobs[k - 1].token.endswith("\t"))
        if not after_tab or prefix.strip() != "":
            continue
        slot = len(expected)
        if slot >= len(tokens):
            raise ParseError(f"more placeholders than the {len(tokens)} tokens")
        distribution = digit_distribution(item.top, prefix)
        if not distribution:
            raise ParseError(f"no value 0-10 among the top logprobs at token {slot}")
        expected.append(expected_value(distribution))
        values.append([float(v) for v in distribution])
        probabilities.append(list(distribution.values()))
    if len(expected) != len(tokens):
        raise ParseError(
            f"found {len(expected)} placeholders for {len(tokens)} tokens in the echoed prompt "
            "(the server's tokenizer may merge the tab with its neighbours)"
        )
    return SequenceSimulation(
        tokens=list(tokens),
        expected_activations=expected,
        distribution_values=values,
        distribution_probabilities=probabilities,
    )


class AllAtOnceSimulator(LogprobSimulator):
    name = "all_at_once"
    version = "2"  # 2: the explanation shown as quoted data
    default_top_logprobs = 15

    def __init__(
        self,
        backend,
        model,
        cache=None,
        concurrency=8,
        *,
        logprobs: int | None = None,
        max_tokens: int = 1,
        max_attempts: int = 2,
    ):
        super().__init__(backend, model, cache, concurrency, top_logprobs=logprobs, max_attempts=max_attempts)
        # Some servers refuse max_tokens=0; one generated token costs next to nothing.
        self.max_tokens = max_tokens

    # max_tokens is 1: the generated part is always cut ("length"), and the values are
    # read from the echoed prompt's logprobs, not from anything generated.
    truncated = Truncated.IGNORE

    @property
    def _answer_cap(self) -> int:
        return self.max_tokens  # one generated token, cut and not read

    def _prompt_tokens(self, explanation: str, tokens: list[str]) -> int:
        return count_tokens(build_prompt(explanation, tokens))

    def _request(self, explanation, tokens, rejection, deadline, *, budget=1.0) -> Completion:
        # Nothing is generated, so a note to the model cannot help; the retry is
        # for a server that answered oddly once.
        return self.backend.complete(
            build_prompt(explanation, tokens),
            model=self.model,
            max_tokens=self.max_tokens,
            echo=True,
            logprobs=self.top_logprobs,
            deadline=deadline,
        )

    def _parse(self, completion: Completion, tokens: list[str]) -> SequenceSimulation:
        return parse_answer(completion, tokens)
