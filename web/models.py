"""The request models: they validate every request and are the source of `/openapi.json`,
so the published contract and the checks cannot drift apart. Nothing here imports Flask.

The routes turn validated texts into the domain's ActivationRecords (`core.records.to_records`):
below this package nothing sees a request model.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from explainer.search import service as search
from explainer.styles import DEFAULT_STYLE, STYLES
from scorer.intervals import COMPARABLE
from scorer.scorers import JUDGE_NAMES, SCORER_NAMES, SIMULATION
from scorer.simulators import SIMULATOR_NAMES

STYLE_NAMES = tuple(STYLES)
COMPARE_SCORERS = (SIMULATION, *COMPARABLE)

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
# Not blank: the pattern tells the published schema what the stripping tells the server.
Explanation = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"\S")]


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


class _ScoringOptions(_Authenticated):
    """What /score and /compare share: the texts and how they are scored."""

    activations: list[ActivationText] = Field(
        min_length=1, description="The texts to simulate, with their true activations (the top texts)"
    )
    random_activations: list[ActivationText] = Field(
        default_factory=list,
        description="Texts sampled at random from the corpus: the score then pools top and random "
        "texts (the 'all' score) and the answer adds top_score and random_score",
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
        "fuzzing (balanced accuracy of a yes/no judge), embedding (ROC-AUC of embedding similarity), "
        "holistic (a judge's 0-4 rubric level for the top texts, / 4), intruder (the share of rounds "
        "in which a judge finds the non-activating text; rates the latent, ignores the explanation)",
    )
    judge: Literal[JUDGE_NAMES] | None = Field(  # type: ignore[valid-type]
        default=None,
        description="detection, fuzzing, holistic, intruder: who judges, the offline simulator or the LLM; "
        "offline when the server scores offline by default, else openai",
    )
    activation_threshold: FiniteNumber = Field(
        default=0.3,
        gt=0,
        le=1,
        description="detection, fuzzing, embedding, intruder: a text (or token) activates when its max "
        "activation is at least this fraction of the request's max activation",
    )
    batch_size: OptionalJsonInt = Field(
        default=None,
        ge=1,
        le=50,
        description="detection, fuzzing: most texts per LLM prompt (default: as many as "
        "SIMULATOR_BATCH_TOKENS allows)",
    )
    random_fraction: FiniteNumber = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="fuzzing: the share of activating texts shown with random instead of correct marks",
    )
    seed: JsonInt = Field(
        default=0, ge=0, le=2**31 - 1, description="fuzzing, intruder: seed of the random marks (and the rounds)"
    )
    top_k: JsonInt = Field(default=12, ge=1, le=50, description="holistic: how many top texts the judge reads")
    rounds: JsonInt = Field(default=10, ge=1, le=50, description="intruder: rounds, one judge call each")
    activating_per_round: JsonInt = Field(
        default=4, ge=2, le=10, description="intruder: activating texts shown with the intruder in each round"
    )


class ScoreRequest(_ScoringOptions):
    explanation: Explanation = Field(description="The explanation to score")


class CompareRequest(_ScoringOptions):
    scorer: Literal[COMPARE_SCORERS] = Field(  # type: ignore[valid-type]
        default="simulation",
        description="The scorers whose score can be resampled text by text: simulation, detection, fuzzing, embedding",
    )
    explanations: list[Explanation] = Field(
        min_length=2, max_length=10, description="The explanations to score on the same texts and compare"
    )
    dry_run: JsonBool = Field(default=False, description="State the LLM calls and tokens it would take; no call")


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
    seed: JsonInt = Field(
        default=0, ge=0, le=2**31 - 1, description="search: seed of the split into proposal and held-out texts"
    )
