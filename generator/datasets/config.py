"""What mkdocs.yml and directives declare: LAION columns, conditions, filter chains, datasets."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, UnmakeError
from ..specs import is_text, preview
from .domains import extractor

LAION_COLUMNS = ("URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "punsafe", "pwatermark",
                 "aesthetic", "LANGUAGE", "key")
COLUMN_VARIANTS = {  # other names the same column goes by in LAION releases and their kin
    "TEXT": ("caption",), "URL": ("url",), "aesthetic": ("AESTHETIC_SCORE", "aesthetic_score"),
    "LANGUAGE": ("lang",), "punsafe": ("nsfw_score",), "key": ("id",),
}
NUMERIC_FIELDS = {  # condition name -> column
    "aesthetic": "aesthetic", "similarity": "similarity", "punsafe": "punsafe",
    "pwatermark": "pwatermark", "width": "WIDTH", "height": "HEIGHT",
}
PROBABILITIES = ("punsafe", "pwatermark")
CONDITION_FIELDS = (*NUMERIC_FIELDS, "size", "language", "domain")
FIELD_COLUMNS: dict[str, tuple[str, ...]] = {
    **{k: (v,) for k, v in NUMERIC_FIELDS.items()},
    "size": ("WIDTH", "HEIGHT"), "language": ("LANGUAGE",), "domain": ("URL",),
}
OPS = ("<=", ">=", "!=", "==", "=", "<", ">")
_COMPARISON = re.compile(
    r"^\s*(<=|>=|!=|==|=|<|>)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_DOMAIN = re.compile(r"^[\w-]+(\.[\w-]+)*$")

DATASET_KEYS = ("metadata", "images", "embeddings", "columns", "unsafe_threshold", "hotlink",
                "description", "clip_model")
CHAIN_KEYS = ("title", "source", "stages")
PRESET_CHAINS: dict[str, dict[str, Any]] = {
    "sd-v1-improved-aesthetics": {
        "title": "Stable Diffusion v1.2+ “improved aesthetics” (laion-improved-aesthetics)",
        "source": "CompVis/stable-diffusion-v1-2 model card: laion2B-en filtered to images with "
                  "an original size ≥ 512×512, an estimated aesthetics score > 5.0 and an "
                  "estimated watermark probability < 0.5. The card's aesthetics score came from "
                  "an improved predictor; here the dataset's own aesthetic column stands in.",
        "stages": [
            {"label": "original size ≥ 512×512", "size": ">= 512"},
            {"label": "aesthetic score > 5.0", "aesthetic": "> 5.0"},
            {"label": "watermark probability < 0.5", "pwatermark": "< 0.5"},
        ],
    },
}


class DatasetError(UnmakeError):
    """A dataset that cannot be used as declared or as found on disk."""


def one_line(exc: BaseException) -> str:
    """An error's message as one printable line (library messages may hold control bytes)."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


# -- conditions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One typed test on a row: `aesthetic > 5`, `language in (en, de)`, `domain in (…)`.

    `generator.datasets.sql.condition_sql` writes it as SQL.
    """

    field: str
    op: str  # one of OPS (numbers) or "in" (language, domain)
    value: float | tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return FIELD_COLUMNS[self.field]

    def describe(self) -> str:
        if self.field == "domain":
            assert isinstance(self.value, tuple)
            return "domain is " + " or ".join(self.value) + " (or a subdomain)"
        if self.op == "in":
            assert isinstance(self.value, tuple)
            return f"{self.field} in ({', '.join(v or '“”' for v in self.value)})"
        what = "size (shorter side)" if self.field == "size" else self.field
        return f"{what} {self.op} {self.value:g}"

    def normal(self) -> list[Any]:
        return [self.field, self.op, list(self.value) if isinstance(self.value, tuple)
                else self.value]


def conditions_from(normal: list[list[Any]]) -> list[Condition]:
    """Conditions back from their normal form (a job's inputs)."""
    return [Condition(f, op, tuple(v) if isinstance(v, list) else v) for f, op, v in normal]


def parse_conditions(mapping: Any, error: Callable[[str | None, str], Exception],
                     skip: tuple[str, ...] = ()) -> tuple[Condition, ...]:
    """Typed conditions from a YAML mapping; `error(key, message)` makes the exception to raise."""
    if not isinstance(mapping, dict):
        raise error(None, f"must be a mapping of conditions ({', '.join(CONDITION_FIELDS)}), "
                          f"got {preview(mapping)}")
    out: list[Condition] = []
    for name, value in mapping.items():
        if name in skip:
            continue
        def located(message: str, key: str = str(name)) -> Exception:
            return error(key, message)

        out.extend(parse_condition(str(name), value, located))
    return tuple(out)


def parse_condition(name: str, value: Any, error: Callable[[str], Exception]) -> list[Condition]:
    if name not in CONDITION_FIELDS:
        raise error(f"is not a known condition (known: {', '.join(CONDITION_FIELDS)})")
    if name in ("language", "domain"):
        items = value if isinstance(value, list) else [value]
        if not items or not all(is_text(v) for v in items):
            raise error(f"must be text or a list of text, got {preview(value)}")
        texts = tuple(sorted({str(v).strip().lower() for v in items}))
        if name == "domain":
            for d in texts:
                if "://" in d or "/" in d or not _DOMAIN.match(d):
                    raise error(f"must be a domain like shutterstock.com (no scheme, no path), "
                                f"got {preview(d)}")
                ext = extractor()(d)
                if ext.suffix and not ext.domain:
                    raise error(f"{preview(d)} is a public suffix, not a registered domain; give a "
                                "domain like example.co.uk")
        return [Condition(name, "in", texts)]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise error("must not be an empty list")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            raise error(f"must be a comparison like \"> 5\" or \">= 512\" (or a list of them), "
                        f"got {preview(item)}")
        match = _COMPARISON.match(str(item))
        if not match:
            raise error(f"must be a comparison like \"> 5\" or \">= 512\" (operators: "
                        f"{' '.join(OPS)}), got {preview(item)}")
        op, number = match.group(1) or "=", float(match.group(2))
        if not math.isfinite(number):  # "> 1e999" reads as infinity
            raise error(f"must compare with a finite number, got {preview(item)}")
        if name in PROBABILITIES and not 0.0 <= number <= 1.0:
            raise error(f"is a probability: compare it with a number in 0–1, got {number:g}")
        out.append(Condition(name, "=" if op == "==" else op, number))
    return out


# -- filter chains ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    label: str
    conditions: tuple[Condition, ...]

    def normal(self) -> dict[str, Any]:
        return {"label": self.label, "conditions": [c.normal() for c in self.conditions]}


@dataclass(frozen=True)
class Chain:
    """A named sequence of training-data filters; each stage keeps what passes it."""

    name: str
    title: str
    source: str
    stages: tuple[Stage, ...]

    def normal(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "source": self.source,
                "stages": [s.normal() for s in self.stages]}


def parse_chain(name: str, value: Any) -> Chain:
    where = f"mkdocs.yml: plugins.unmake.filter_chains.{name}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping with {', '.join(CHAIN_KEYS)}")
    for key in value:
        if key not in CHAIN_KEYS:
            raise ConfigError(f"{where}.{key}: is not a known key (known: {', '.join(CHAIN_KEYS)})")
    stages = value.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{where}.stages: must be a list of stages, each a mapping of "
                          f"conditions ({', '.join(CONDITION_FIELDS)}) and an optional label")
    out = []
    for i, stage in enumerate(stages):
        here = f"{where}.stages[{i}]"

        def err(key: str | None, message: str, here: str = here) -> ConfigError:
            return ConfigError(f"{here}{'.' + key if key else ''}: {message}")

        conditions = parse_conditions(stage, err, skip=("label",))
        if not conditions:
            raise err(None, "has no condition")
        label = stage.get("label")
        if label is not None and not isinstance(label, str):
            raise err("label", f"must be text, got {label!r}")
        out.append(Stage(label or ", ".join(c.describe() for c in conditions), conditions))
    for key in ("title", "source"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ConfigError(f"{where}.{key}: must be text, got {value[key]!r}")
    return Chain(name, value.get("title") or name, value.get("source") or "", tuple(out))


# -- datasets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetConfig:
    """One `datasets:` entry, validated (nothing read from disk yet)."""

    alias: str
    metadata: tuple[str, ...]  # files or globs, as written (relative to mkdocs.yml)
    images: str | None
    embeddings: str | None
    columns: tuple[tuple[str, str], ...]  # LAION name -> the file's name
    unsafe_threshold: float
    hotlink: bool
    description: str
    clip_model: str = "default"  # the CLIP alias that made (or makes) the embeddings


def parse_dataset(alias: str, value: Any) -> DatasetConfig:
    where = f"mkdocs.yml: plugins.unmake.datasets.{alias}"
    if isinstance(value, str | list):  # shorthand: just the metadata
        value = {"metadata": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a mapping with 'metadata:' (Parquet files) and "
                          f"optional {', '.join(DATASET_KEYS[1:])}")
    for key in value:
        if key not in DATASET_KEYS:
            raise ConfigError(f"{where}.{key}: is not a known key (known: "
                              f"{', '.join(DATASET_KEYS)})")
    meta = value.get("metadata")
    items = meta if isinstance(meta, list) else [meta]
    if meta is None or not items or not all(isinstance(m, str) and m for m in items):
        raise ConfigError(f"{where}.metadata: must be a Parquet file, a glob or a list of them "
                          f"(relative to mkdocs.yml), got {meta!r}")
    for key in ("images", "embeddings", "description", "clip_model"):
        if value.get(key) is not None and not isinstance(value[key], str):
            what = "a CLIP model alias" if key == "clip_model" else "a path"
            raise ConfigError(f"{where}.{key}: must be text ({what}), got {value[key]!r}")
    columns = value.get("columns") or {}
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}.columns: must map LAION names to the file's column names")
    for name, real in columns.items():
        if name not in LAION_COLUMNS:
            raise ConfigError(f"{where}.columns.{name}: is not a LAION column (known: "
                              f"{', '.join(LAION_COLUMNS)})")
        if not isinstance(real, str) or not real:
            raise ConfigError(f"{where}.columns.{name}: must be a column name, got {real!r}")
    threshold = value.get("unsafe_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) \
            or not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"{where}.unsafe_threshold: must be a number in 0–1, got {threshold!r}")
    hotlink = value.get("hotlink", False)
    if not isinstance(hotlink, bool):
        raise ConfigError(f"{where}.hotlink: must be true or false, got {hotlink!r}")
    return DatasetConfig(alias, tuple(str(m) for m in items), value.get("images"),
                         value.get("embeddings"), tuple(sorted(columns.items())),
                         float(threshold), hotlink, value.get("description") or "",
                         value.get("clip_model") or "default")
