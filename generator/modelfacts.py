"""Facts about a model read from its files, without loading a single weight (no torch here).

What is read, and from where:

- `model_index.json`: the pipeline class, the diffusers version it was saved with, and each
  component's library and class (a component set to null is recorded as not included);
- each component's config (`config.json`, `scheduler_config.json`, `tokenizer_config.json`…);
- safetensors headers (8 bytes little-endian u64 length, then JSON with dtype and shape per
  tensor): tensor counts, dtypes and parameter counts (elements of floating-point tensors);
- file sizes of the weight files;
- the model card's (README.md) YAML front matter: licence, base model, datasets, language, tags.

A fact that is not in the files is None (or a note says why), never guessed or defaulted.
The runner `run(jobs, options)` serves the `ecosystem.facts` job type.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from .store import Result

# Bump when what is read, or how, changes: it is part of every fact sheet's cache key.
READER_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the header
MAX_JSON = 32 * 1024 * 1024  # configs and tokenizer files larger than this are not read
MAX_CARD = 256 * 1024  # the front matter must lie in the card's first 256 KiB
CARD_KEYS = ("license", "license_name", "license_link", "base_model", "datasets", "language",
             "tags", "library_name", "pipeline_tag")
CONFIG_FILES = ("config.json", "scheduler_config.json", "tokenizer_config.json",
                "preprocessor_config.json")
OTHER_WEIGHTS = (".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".gguf")
_SHARD = re.compile(r"-\d{5}-of-\d{5}")
_FRONT = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*\r?$", re.S | re.M)


class FactsError(ValueError):
    """A model folder whose facts cannot be read at all (no model_index.json)."""


# -- safetensors ---------------------------------------------------------------------------------
def read_safetensors_header(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The tensors ({name: {dtype, shape}}) and `__metadata__` of a safetensors file.

    Reads the header only; raises ValueError naming what is wrong with a malformed file.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name}: shorter than the 8-byte safetensors header length")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or length > size - 8:
            raise ValueError(f"{path.name}: header length {length} is impossible for a "
                             f"{size}-byte file")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path.name}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: header is not a JSON object")
    meta = header.pop("__metadata__", None)
    tensors = {}
    for name, info in header.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        dtype = info.get("dtype") if isinstance(info, dict) else None
        if (not isinstance(dtype, str) or not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                           for d in shape)):
            raise ValueError(f"{path.name}: tensor {name!r} has no valid dtype and shape")
        tensors[name] = {"dtype": dtype, "shape": shape}
    return tensors, meta if isinstance(meta, dict) else None


def is_float(dtype: str) -> bool:
    """F64, F32, F16, BF16, F8_*…: the dtypes of trainable parameters (not I64 buffers)."""
    return dtype.startswith(("F", "BF"))


def count_elements(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def summarise_tensors(tensors: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tensor count, dtypes, parameters (floating-point elements) and other elements."""
    params = other = 0
    for info in tensors.values():
        n = count_elements(info["shape"])
        if is_float(info["dtype"]):
            params += n
        else:
            other += n
    return {"tensors": len(tensors), "dtypes": sorted({t["dtype"] for t in tensors.values()}),
            "parameters": params, "other_elements": other}


def _variant(name: str) -> str | None:
    """'diffusion_pytorch_model.fp16.safetensors' -> 'fp16'; shards and plain names -> None."""
    stem = _SHARD.sub("", name.removesuffix(".safetensors"))
    _, _, variant = stem.partition(".")
    return variant or None


# -- small files ----------------------------------------------------------------------------------
def _read_json(path: Path, problems: list[str], root: Path) -> Any:
    try:
        if path.stat().st_size > MAX_JSON:
            problems.append(f"{path.relative_to(root)}: larger than {MAX_JSON} bytes; not read")
            return None
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problems.append(f"{path.relative_to(root)}: unreadable ({exc.__class__.__name__})")
        return None


def plain(value: Any) -> Any:
    """YAML values made JSON-able as they are (dates as ISO text, other objects as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return str(value)


def read_card(folder: Path) -> tuple[dict[str, Any], list[str]]:
    """The model card's front matter facts; every key absent from the card is None."""
    card: dict[str, Any] = {"file": None, "front_matter": "absent",
                            **dict.fromkeys(CARD_KEYS)}
    path = folder / "README.md"
    if not path.is_file():
        return card, []
    card["file"] = "README.md"
    with open(path, "rb") as fh:
        text = fh.read(MAX_CARD).decode("utf-8", errors="replace").lstrip("\ufeff")
    match = _FRONT.match(text)
    if not match:
        return card, []
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 2})" if mark else ""
        card["front_matter"] = "invalid"
        return card, [f"README.md: front matter is not valid YAML{at}; its facts are not read"]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        card["front_matter"] = "invalid"
        return card, ["README.md: front matter is not a YAML mapping; its facts are not read"]
    card["front_matter"] = "present"
    for key in CARD_KEYS:
        if key in data:
            card[key] = plain(data[key])
    return card, []


def _vocab_size(folder: Path, problems: list[str], root: Path) -> int | None:
    """Tokens in a tokenizer folder: vocab.json, else tokenizer.json's vocab and added tokens."""
    vocab = _read_json(folder / "vocab.json", problems, root)
    if isinstance(vocab, dict):
        return len(vocab)
    data = _read_json(folder / "tokenizer.json", problems, root)
    if not isinstance(data, dict):
        return None
    model_vocab = (data.get("model") or {}).get("vocab")
    ids: set[Any] = set()
    if isinstance(model_vocab, dict):
        ids |= set(model_vocab.values())
    elif isinstance(model_vocab, list):  # unigram: [[piece, score], ...]
        ids |= set(range(len(model_vocab)))
    else:
        return None
    ids |= {t.get("id") for t in data.get("added_tokens") or [] if isinstance(t, dict)}
    return len(ids)


# -- the whole folder -----------------------------------------------------------------------------
def _weights(folder: Path, root: Path, problems: list[str]) -> dict[str, Any]:
    """Every safetensors file directly in `folder`, its size and header summary."""
    files = []
    for path in sorted(folder.glob("*.safetensors")):
        if not path.is_file():
            continue
        entry: dict[str, Any] = {"file": str(path.relative_to(root)), "bytes": path.stat().st_size,
                                 "variant": _variant(path.name)}
        try:
            tensors, meta = read_safetensors_header(path)
        except (OSError, ValueError) as exc:
            entry["error"] = str(exc)
            problems.append(f"{entry['file']}: {exc}")
        else:
            entry.update(summarise_tensors(tensors), metadata=plain(meta))
        files.append(entry)
    variants = sorted({f["variant"] for f in files}, key=lambda v: (v is not None, v or ""))
    counted = variants[0] if variants else None
    chosen = [f for f in files if f["variant"] == counted]
    readable = bool(chosen) and all("error" not in f for f in chosen)
    others = sorted(str(p.relative_to(root)) for p in folder.iterdir()
                    if p.is_file() and p.suffix in OTHER_WEIGHTS)
    return {
        "weights": files,
        "counted_variant": counted,
        "parameters": sum(f["parameters"] for f in chosen) if readable else None,
        "other_elements": sum(f["other_elements"] for f in chosen) if readable else None,
        "dtypes": sorted({d for f in files for d in f.get("dtypes", [])}),
        "weight_bytes": sum(f["bytes"] for f in files),
        "other_weight_files": others,  # pickle and other formats: listed, never opened
    }


def read_facts(folder: str | Path) -> dict[str, Any]:
    """Everything this reader knows about the model in `folder` (diffusers layout), JSON-able."""
    root = Path(folder)
    problems: list[str] = []
    index = _read_json(root / "model_index.json", problems, root)
    if not isinstance(index, dict):
        raise FactsError("model_index.json is missing or not valid JSON; not a diffusers model "
                         "folder")
    components: dict[str, Any] = {}
    for name, value in sorted(index.items()):
        if name.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, cls = value
        comp: dict[str, Any] = {"library": library, "class": cls, "included": cls is not None,
                                "folder": (root / name).is_dir(), "config_file": None,
                                "config": None}
        sub = root / name
        if comp["folder"]:
            for candidate in CONFIG_FILES:
                if (sub / candidate).is_file():
                    comp["config_file"] = f"{name}/{candidate}"
                    comp["config"] = plain(_read_json(sub / candidate, problems, root))
                    break
            comp.update(_weights(sub, root, problems))
            if name.startswith("tokenizer"):
                comp["vocab_size"] = _vocab_size(sub, problems, root)
        components[name] = comp
    loose = _weights(root, root, problems)  # single-file checkpoints beside the components
    weighted = {n: c for n, c in components.items() if c.get("weights") or
                c.get("other_weight_files")}
    uncounted = sorted(n for n, c in weighted.items() if c["parameters"] is None)
    counted = [c["parameters"] for c in weighted.values() if c["parameters"] is not None]
    card, card_problems = read_card(root)
    return {
        "reader": READER_VERSION,
        "pipeline_class": index.get("_class_name"),
        "diffusers_version": index.get("_diffusers_version"),
        "components": components,
        "parameters_total": sum(counted) if counted else None,
        "parameters_uncounted": uncounted,  # components with weights this reader could not count
        "weight_bytes_total": sum(c.get("weight_bytes", 0) for c in components.values()),
        "dtypes": sorted({d for c in components.values() for d in c.get("dtypes", [])}),
        "loose_weights": loose["weights"] + [{"file": f} for f in loose["other_weight_files"]],
        "card": card,
        "problems": problems + card_problems,
    }


# -- runner ---------------------------------------------------------------------------------------
def _folder_of(job: Any) -> Path:
    if job.run["source"] == "builtin":
        from .backends.tiny import ensure_tiny  # writes the tiny model on first use (torch)
        from .models import tiny_ref

        return ensure_tiny(tiny_ref(job.run["model"]))
    return Path(job.run["path"])


def run(jobs: list[Any], options: dict[str, Any]) -> Iterator[tuple[Any, Result | Exception]]:
    """Runner for `ecosystem.facts`: one fact sheet per model, read from its files."""
    for job in jobs:
        started = time.monotonic()
        try:
            facts = read_facts(_folder_of(job))
        except Exception as exc:  # one unreadable model fails alone
            yield job, exc
            continue
        yield job, Result(data=facts, env={"reader": READER_VERSION},
                          seconds=time.monotonic() - started)
