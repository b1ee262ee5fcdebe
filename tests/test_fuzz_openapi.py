"""Fuzzing every route of /openapi.json with schemathesis, in process, through the WSGI app.

Schemathesis (version pinned in requirements-hardening.txt) generates requests from
the published schema: schema-valid ones ("positive") and deliberately invalid ones
("negative"), and checks each answer: no 5xx, a documented status code and content
type, a body that matches the documented schema, invalid input rejected with a 4xx
and valid input accepted. On top of that every body must be strict RFC 8259 JSON,
and every error must carry `error` and `code`.

Two apps: an open one, and one with SERVER_KEY and a (generous) rate limit, so the
fuzzed bodies also run through authentication and the limiter's key function.
Generation is derandomized (the same examples on every run) and bounded by
FUZZ_MAX_EXAMPLES per route and mode, so the file stays well under a minute.

Some rules of the contract are not expressible in JSON Schema: a text's tokens and
values have the same length, the explanation is not blank once stripped, the
configured limits. `map_case` repairs schema-valid cases so that they also obey
those rules; otherwise "valid data must be accepted" would fail on them.
"""
from __future__ import annotations

import json
import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.generation import GenerationMode

from scorer.guard import check_explanation, normalise_explanation
from server import create_app
from tests.conftest import make_settings

MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
KEY = "fuzz-server-key-123"

_COMMON = dict(offline_embeddings=False, log_level="WARNING", log_format="text")
OPEN_APP = create_app(make_settings(**_COMMON))
LOCKED_APP = create_app(make_settings(server_key=KEY, rate_limit="1000000/minute", **_COMMON))


def _published(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _load(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
    schema.hook(map_case)
    return schema


def _repair_texts(texts):
    if not isinstance(texts, list):
        return
    for text in texts:
        if not isinstance(text, dict):
            continue
        tokens, values = text.get("tokens"), text.get("values")
        if not isinstance(tokens, list) or not isinstance(values, list):
            continue
        n = min(len(tokens), len(values))
        text["tokens"], text["values"] = (tokens[:n], values[:n]) if n else (["a"], [0.0])


def _acceptable(explanation: str) -> str:
    """Not blank, within the length limit, and not refused by the guard (a forged answer or a
    prompt section is a 400 `explanation_rejected` the schema cannot state)."""
    explanation = explanation.strip()[:2000] or "x"
    return "x" if check_explanation(explanation) or not normalise_explanation(explanation) else explanation


def map_case(context, case):
    """Make schema-valid cases valid by the rules the schema cannot state."""
    mode = case.meta.generation.mode if case.meta is not None else None
    if mode != GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return case
    body = case.body
    _repair_texts(body.get("activations"))
    _repair_texts(body.get("random_activations"))
    explanation = body.get("explanation")
    if isinstance(explanation, str):
        body["explanation"] = _acceptable(explanation)
    if isinstance(body.get("explanations"), list):
        body["explanations"] = [_acceptable(e) if isinstance(e, str) else e for e in body["explanations"]]
    if isinstance(body.get("model"), str) and not body["model"].strip():
        body.pop("model")
    # LLM simulators and explainers answer 503 here: no backend is configured.
    body.pop("simulator", None)
    body.pop("explainer", None)
    body.pop("judge", None)
    if isinstance(body.get("references"), list):
        body["references"] = [r.strip()[:2000] or "x" if isinstance(r, str) else r for r in body["references"]]
    if case.path == "/compare" and body.get("scorer") not in (None, "simulation") and body.get("dry_run"):
        body["dry_run"] = False  # a cost forecast is the simulation scorer's only (400, tested elsewhere)
    if case.path in ("/score", "/compare") and body.get("scorer") not in (None, "simulation"):
        # detection, fuzzing and embedding need activating and non-activating texts
        # (fuzzing: two activating ones with room for random marks), 400 otherwise.
        texts = [t for t in body.get("activations") or [] if isinstance(t, dict)]
        values = [abs(v) for t in texts for v in t.get("values") or [] if isinstance(v, (int, float))]
        top = max(values + [1.0])
        body["activations"] = texts[:190] + [
            {"tokens": ["a", "b"], "values": [top, 0.0]},
            {"tokens": ["c", "d"], "values": [top, 0.0]},
            {"tokens": ["e", "f"], "values": [0.0, 0.0]},
        ]
    if case.path == "/explain":
        # Something must activate for there to be anything to explain, and the
        # prompt's token budget must at least hold the instructions.
        for text in body.get("activations") or []:
            if isinstance(text, dict) and text.get("values") and max(text["values"]) <= 0:
                text["values"][0] = 1.0
        body.pop("max_prompt_tokens", None)
        if body.get("score") is True and not body.get("random_activations"):
            # Scoring candidates needs held-out texts (400 without them, tested below).
            body["random_activations"] = [{"tokens": ["a", "b"], "values": [0.0, 0.0]}]
        if body.get("strategy") == "search":
            # n and score belong to strategy "single": with "search" they are a 400.
            body.pop("n", None)
            body.pop("score", None)
    return case


OPEN = _load(OPEN_APP)
LOCKED = _load(LOCKED_APP)


def _reject_constant(name):
    raise AssertionError(f"{name} in a response body is not JSON")


def check_answer(case, response) -> None:
    assert response.status_code < 500, response.text[:500]
    if case.method.upper() in ("HEAD", "OPTIONS"):
        return  # no body by definition
    body = json.loads(response.content, parse_constant=_reject_constant)
    if response.status_code >= 400:
        assert isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("code"), str) and body["code"], body


_SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


@OPEN.parametrize()
@_SETTINGS
def test_open_service(case):
    response = case.call_and_validate()
    check_answer(case, response)


@LOCKED.parametrize()
@_SETTINGS
def test_locked_service_with_the_key(case):
    response = case.call_and_validate(headers={"X-Secret-Key": KEY})
    check_answer(case, response)


def test_explain_scoring_without_heldout_texts_is_a_400():
    # Found by this fuzzer (it was a 500).
    payload = {"activations": [{"tokens": ["a", "b"], "values": [1.0, 0.0]}], "score": True}
    response = OPEN_APP.test_client().post("/explain", json=payload)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.get_json()["code"] == "invalid_request"


def test_the_published_schema_is_openapi_3_1():
    # pydantic writes JSON Schema 2020-12 (e.g. a numeric exclusiveMinimum), which is
    # OpenAPI 3.1's dialect; under a 3.0 label the fuzzer could not read /explain at all.
    assert str(_published(OPEN_APP)["openapi"]).startswith("3.1")
