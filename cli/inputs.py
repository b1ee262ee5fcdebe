"""The latents of a bulk job, read from a Neuronpedia/SAEDashboard export or from JSONL.

A latent is `{id, explanation?, activations, random_activations?}` with `activations` in the
service's shape (`[{tokens, values}]`), ready for /explain and /score.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class InputError(ValueError):
    """The input file cannot be read as latents; the message says where and why."""


@dataclass(frozen=True)
class Latent:
    id: str
    activations: list[dict]
    random_activations: list[dict] = field(default_factory=list)
    explanation: str | None = None


def read_latents(path: Path, *, texts: int = 20, window: int = 64, random_texts: int = 0) -> list[Latent]:
    """Every latent of `path` (a file, or a folder of .json and .jsonl files read in name
    order), ids unique. An export's texts are cut to `window` tokens around their strongest
    token and its `texts` strongest kept (its quantile texts give up to `random_texts` random
    ones, evenly spaced); JSONL latents are taken as written."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and p.is_file())
        if not files:
            raise InputError(f"{path}: no .json or .jsonl file in this folder")
        latents = [latent for f in files for latent in _read_file(f, texts, window, random_texts)]
        return _unique(latents, path)
    return _unique(_read_file(path, texts, window, random_texts), path)


def _read_file(path: Path, texts: int, window: int, random_texts: int) -> list[Latent]:
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    stripped = raw.lstrip()
    if stripped.startswith("{") and '"features"' in stripped[:200_000]:
        try:
            export = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(export, dict) and isinstance(export.get("features"), list):
            return list(_from_export(export, texts, window, random_texts))
    return list(_from_jsonl(raw, path))


def _unique(latents: list[Latent], path: Path) -> list[Latent]:
    seen: set[str] = set()
    for latent in latents:
        if latent.id in seen:
            raise InputError(f"{path}: the id {latent.id!r} appears more than once")
        seen.add(latent.id)
    return latents


def _from_jsonl(raw: str, path: Path) -> Iterator[Latent]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{number}: not valid JSON ({exc})") from None
        if not isinstance(item, dict) or "id" not in item or not isinstance(item.get("activations"), list):
            raise InputError(f"{path}:{number}: each line needs an \"id\" and an \"activations\" list")
        explanation = item.get("explanation")
        if explanation is not None and not isinstance(explanation, str):
            raise InputError(f"{path}:{number}: \"explanation\" must be a string")
        yield Latent(
            id=str(item["id"]),
            activations=item["activations"],
            random_activations=item.get("random_activations") or [],
            explanation=explanation or None,
        )


def _from_export(export: dict, texts: int, window: int, random_texts: int) -> Iterator[Latent]:
    prefix = ":".join(str(export[k]) for k in ("model_id", "layer", "sae_set") if k in export)
    for position, feature in enumerate(export["features"]):
        index = feature.get("feature_index", feature.get("index", position))
        records = [r for r in feature.get("activations") or [] if _usable(r)]
        top = [r for r in records if r.get("bin_min", -1) == -1]
        quantile = [r for r in records if r.get("bin_min", -1) != -1]
        top.sort(key=lambda r: max(r["values"]), reverse=True)
        chosen_random = _evenly(quantile, random_texts)
        yield Latent(
            id=f"{prefix}:{index}" if prefix else str(index),
            activations=[_cut(r, window) for r in top[:texts]],
            random_activations=[_cut(r, window) for r in chosen_random],
            explanation=_explanation(feature),
        )


def _usable(record: dict) -> bool:
    tokens, values = record.get("tokens"), record.get("values")
    return isinstance(tokens, list) and isinstance(values, list) and 0 < len(tokens) == len(values)


def _evenly(items: list, count: int) -> list:
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _cut(record: dict, window: int) -> dict:
    tokens, values = record["tokens"], record["values"]
    if len(tokens) <= window:
        return {"tokens": list(tokens), "values": list(values)}
    peak = max(range(len(values)), key=values.__getitem__)
    start = min(max(0, peak - window // 2), len(tokens) - window)
    return {"tokens": tokens[start : start + window], "values": values[start : start + window]}


def _explanation(feature: dict) -> str | None:
    explanations = feature.get("explanations")
    if isinstance(explanations, list):
        for item in explanations:
            text = item.get("description") if isinstance(item, dict) else item
            if isinstance(text, str) and text.strip():
                return text.strip()
    text = feature.get("explanation")
    return text.strip() if isinstance(text, str) and text.strip() else None
