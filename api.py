"""The HTTP contract as data: request models, error codes, and the OpenAPI document.

The pydantic models here validate every request and are also the source of
`/openapi.json`, so the published contract and the checks cannot drift apart.
Nothing here imports Flask.
"""
from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from explainer.search import service as search
from explainer.styles import DEFAULT_STYLE, STYLES
from scorer.scorers import JUDGE_NAMES, SCORER_NAMES
from scorer.simulators import SIMULATOR_NAMES

STYLE_NAMES = tuple(STYLES)

# -- errors -----------------------------------------------------------------


class ApiError(Exception):
    """An error with its HTTP status and stable machine-readable code."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": self.message, "code": self.code}


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request", message)


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


# -- JSON bodies ------------------------------------------------------------


def finite_json(value: Any) -> Any:
    """Replace non-finite floats by None, recursively: every JSON written is valid RFC 8259."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value



def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def parse_json_body(raw: bytes) -> Any:
    """Strict RFC 8259 parsing: UTF-8, no NaN/Infinity, bounded nesting."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(f"the body is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise invalid("the body is empty; send a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise invalid("the JSON body is nested too deeply") from None
    except ValueError as exc:
        raise invalid(f"malformed JSON: {exc}") from None


def field_path(loc: tuple) -> str:
    """('activations', 1, 'values', 3) -> 'activations[1].values[3]'."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = field_path(tuple(first["loc"]))
        message = first["msg"]
        if first["type"] in ("float_type", "finite_number"):
            message = "must be a finite number"
        elif first["type"] == "missing":
            message = "is required"
        elif first["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise invalid(f"{where}: {message}{suffix}") from None


# -- request models ---------------------------------------------------------

FiniteNumber = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _no_bool_or_string(value: Any) -> Any:
    # JSON Schema's integer admits 5.0 but not true or "5"; pydantic's lax int is the reverse.
    if isinstance(value, (bool, str)):
        raise ValueError("must be an integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_no_bool_or_string)]
# Not `JsonInt | None`: pydantic would then publish the field's bounds as "ge"/"le", not JSON Schema's.
OptionalJsonInt = Annotated[int | None, BeforeValidator(_no_bool_or_string)]
JsonBool = Annotated[bool, Field(strict=True)]  # true or false; not "yes", 1 or "true"
Explanation = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ActivationText(BaseModel):
    """One text: its tokens and one activation per token (Neuronpedia's shape)."""

    model_config = ConfigDict(extra="ignore")

    tokens: list[Annotated[str, Field(strict=True)]] = Field(min_length=1)
    values: list[FiniteNumber] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> "ActivationText":
        if len(self.tokens) != len(self.values):
            raise ValueError(
                f"{len(self.tokens)} tokens but {len(self.values)} values; "
                "send one value per token"
            )
        return self


class _Authenticated(BaseModel):
    model_config = ConfigDict(extra="ignore")

    secret: str | None = Field(default=None, description="SERVER_KEY, when the server sets one")


class ScoreRequest(_Authenticated):
    explanation: Explanation = Field(description="The explanation to score")
    activations: list[ActivationText] = Field(
        min_length=1, description="The texts to simulate, with their true activations"
    )
    simulator: Literal[SIMULATOR_NAMES] | None = Field(  # type: ignore[valid-type]
        default=None, description="Simulator to use (scorer simulation); the server's default when omitted"
    )
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Model for an LLM simulator or judge, or for the embeddings endpoint "
        "(scorer embedding with EMBEDDING_BACKEND=openai); the server's default when omitted",
    )
    # Options below apply to the scorers named in their descriptions; the others ignore them.
    scorer: Literal[SCORER_NAMES] = Field(  # type: ignore[valid-type]
        default="simulation",
        description="simulation (Pearson of simulated activations, the default), detection and "
        "fuzzing (balanced accuracy of a yes/no judge), embedding (ROC-AUC of embedding similarity)",
    )
    judge: Literal[JUDGE_NAMES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="detection, fuzzing: who answers yes/no, the offline simulator or the LLM; "
        "offline when the server scores offline by default, else openai",
    )
    activation_threshold: FiniteNumber = Field(
        default=0.3,
        gt=0,
        le=1,
        description="detection, fuzzing, embedding: a text (or token) activates when its max "
        "activation is at least this fraction of the request's max activation",
    )
    batch_size: JsonInt = Field(default=5, ge=1, le=50, description="detection, fuzzing: texts per LLM prompt")
    random_fraction: FiniteNumber = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="fuzzing: the share of activating texts shown with random instead of correct marks",
    )
    seed: JsonInt = Field(default=0, ge=0, le=2**31 - 1, description="fuzzing: seed of the random marks")


class SimilarityRequest(_Authenticated):
    explanation: Explanation = Field(description="The explanation to compare")
    references: list[Explanation] = Field(
        min_length=1, description="Reference explanations; one cosine similarity each"
    )
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Model for the embeddings endpoint (EMBEDDING_BACKEND=openai); the server's default when omitted",
    )


class ExplainRequest(_Authenticated):
    activations: list[ActivationText] = Field(
        min_length=1, description="The neuron's texts; the strongest are shown to the explainer"
    )
    random_activations: list[ActivationText] = Field(
        default_factory=list,
        description="Random or low-activation texts, held out to score candidates (with score: true)",
    )
    style: Literal[STYLE_NAMES] = Field(  # type: ignore[valid-type]
        default=DEFAULT_STYLE, description="Prompt style (Lee et al. 2023)"
    )
    simulator: Literal[SIMULATOR_NAMES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="Simulator that scores candidates (score: true, simulate_best); the server's default when omitted",
    )
    explainer: Literal["offline", "openai"] | None = Field(
        default=None, description="Backend; the server's default when omitted"
    )
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = Field(
        default=None, description="Model for the LLM explainer; the server's default when omitted"
    )
    max_activation: FiniteNumber | None = Field(
        default=None, gt=0, description="The neuron's maximum activation (maps to 10)"
    )
    top_k: JsonInt = Field(default=5, ge=1, le=50, description="How many top texts to show")
    threshold: JsonInt = Field(
        default=1, ge=1, le=10, description="Normalised value (1-10) from which a token counts as high"
    )
    n: JsonInt = Field(default=1, ge=1, le=20, description="Candidate explanations to sample")
    temperature: float = Field(default=1.0, ge=0.0, le=2.0, allow_inf_nan=False, strict=True)
    max_prompt_tokens: OptionalJsonInt = Field(
        default=None, ge=1, description="Token budget of the prompt; texts are trimmed to fit"
    )
    score: JsonBool = Field(
        default=False, description="Score each candidate on held-out texts and rank them"
    )
    dry_run: JsonBool = Field(
        default=False, description="Return the prompt and its token count; no LLM call"
    )
    strategy: Literal["single", "search"] = Field(
        default="single",
        description="single: one prompt (style, n, score); search: rounds of proposing "
        "hypotheses and testing them on the texts (AutoInterpret)",
    )
    # The search's budget: the request's numbers, each capped by the server's SEARCH_MAX_*.
    max_rounds: OptionalJsonInt = Field(
        default=None, ge=1, le=100, description=f"search: most rounds (default {search.DEFAULT_MAX_ROUNDS})"
    )
    max_llm_calls: OptionalJsonInt = Field(
        default=None, ge=1, le=100_000,
        description=f"search: most LLM calls, proposer and judge (default {search.DEFAULT_MAX_LLM_CALLS})",
    )
    max_tokens: OptionalJsonInt = Field(
        default=None, ge=1, le=100_000_000,
        description=f"search: most LLM tokens, prompt and completion (default {search.DEFAULT_MAX_TOKENS})",
    )
    hypotheses_per_round: JsonInt = Field(
        default=search.DEFAULT_HYPOTHESES_PER_ROUND, ge=1, le=20,
        description="search: hypotheses asked for in each round",
    )
    patience: JsonInt = Field(
        default=search.DEFAULT_PATIENCE, ge=1, le=100,
        description="search: stop when the best correlation has not improved for this many rounds",
    )
    simulate_best: JsonBool = Field(
        default=False, description="search: also score the best hypothesis with the simulation scorer"
    )


def check_limits(
    max_texts: int, max_tokens: int, **fields: list[ActivationText]
) -> None:
    """413 when the texts of all `fields` together are too many, or one text too long;
    the message names the field as the caller sent it (`random_activations[0].tokens`)."""
    total = sum(len(texts) for texts in fields.values())
    if total > max_texts:
        names = " + ".join(fields)
        raise too_large(f"{names}: {total} texts; the limit is {max_texts}")
    for name, texts in fields.items():
        for i, text in enumerate(texts):
            if len(text.tokens) > max_tokens:
                raise too_large(
                    f"{name}[{i}].tokens: {len(text.tokens)} tokens; the limit is {max_tokens}"
                )


# -- OpenAPI ----------------------------------------------------------------

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "code"],
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
}


def openapi_document(version: str) -> dict:
    """The contract, generated from the request models above."""
    schemas: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ScoreRequest, ExplainRequest, SimilarityRequest):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema

    def errors(*statuses: int) -> dict:
        ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        return {str(s): {"description": _STATUS_TEXT[s], **ref} for s in statuses}

    def post(summary: str, request: str) -> dict:
        return {
            "post": {
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}
                    },
                },
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    **errors(400, 401, 413, 415, 429, 502, 503, 504),
                },
            }
        }

    return {
        "openapi": "3.1.0",
        "info": {"title": "neuron-interp", "version": version},
        "paths": {
            "/score": post("Score an explanation by simulating activations", "ScoreRequest"),
            "/explain": post("Write an explanation from activations", "ExplainRequest"),
            "/similarity": post(
                "Cosine similarity of an explanation with reference explanations (AdaCS)",
                "SimilarityRequest",
            ),
            "/health": {
                "get": {
                    "summary": "Liveness and configured backends",
                    "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}},
                }
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "secretHeader": {"type": "apiKey", "in": "header", "name": "X-Secret-Key"},
            },
        },
    }


_STATUS_TEXT = {
    400: "invalid_request",
    401: "unauthorized",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    502: "upstream_error",
    503: "backend_unavailable",
    504: "upstream_timeout",
}
