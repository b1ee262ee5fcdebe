"""Integer and boolean options are JSON integers and booleans: no `true` for 5, no "5", no "yes".

Pydantic's lax mode would take them; JSON Schema (and /openapi.json) would not.
"""
from __future__ import annotations

import pytest

from tests.conftest import NEURONPEDIA_EXAMPLE
from tests.test_api_score import assert_error, strict_json

EXPLAIN = {"activations": NEURONPEDIA_EXAMPLE["activations"]}

INTEGER_FIELDS = [
    "top_k",
    "threshold",
    "n",
    "max_prompt_tokens",
    "max_rounds",
    "max_llm_calls",
    "max_tokens",
    "hypotheses_per_round",
    "patience",
]
BOOLEAN_FIELDS = ["score", "dry_run", "simulate_best"]


@pytest.mark.parametrize(
    "option, value",
    [("top_k", True), ("n", "2"), ("dry_run", "yes")],
)
def test_explain_options_of_the_wrong_json_type_are_400_naming_the_field(client, option, value):
    response = client.post("/explain", json={**EXPLAIN, option: value})
    assert_error(response, 400, "invalid_request", option)


@pytest.mark.parametrize("value", [True, False, "5", "1"])
@pytest.mark.parametrize("option", INTEGER_FIELDS)
def test_every_explain_integer_refuses_booleans_and_strings(client, option, value):
    response = client.post("/explain", json={**EXPLAIN, option: value})
    assert_error(response, 400, "invalid_request", option)


@pytest.mark.parametrize("value", ["yes", "true", 1, 0, None])
@pytest.mark.parametrize("option", BOOLEAN_FIELDS)
def test_every_explain_boolean_refuses_other_types(client, option, value):
    response = client.post("/explain", json={**EXPLAIN, option: value})
    assert_error(response, 400, "invalid_request", option)


@pytest.mark.parametrize("option, value", [("batch_size", True), ("batch_size", "5"), ("seed", "0"), ("seed", False)])
def test_score_integers_refuse_booleans_and_strings(client, option, value):
    response = client.post("/score", json={**NEURONPEDIA_EXAMPLE, "scorer": "fuzzing", option: value})
    assert_error(response, 400, "invalid_request", option)


def test_json_integers_and_booleans_are_still_accepted(client):
    # A JSON Schema integer may be written 2.0; `null` leaves an optional bound to the server.
    body = strict_json(
        client.post(
            "/explain",
            json={**EXPLAIN, "top_k": 2.0, "n": 1, "max_prompt_tokens": None, "dry_run": False, "score": False},
        )
    )
    assert body["strategy"] == "single" and body["explanation"]
