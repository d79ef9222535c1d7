"""`ecosystem`: a model's fact sheet read from its files, or several side by side.

    ```ecosystem
    models: [default, sample]     # or  model: default
    facts: [pipeline, parameters, license, datasets]   # optional subset, in this order
    lineage: true                 # optional: follow cards' base_model (generator/lineage.py)
    actors: ecosystem/stable-diffusion.yml   # optional: and then this actors file
    caption: What the files say.
    ```

One `ecosystem.facts` job per model (key: its fingerprint and the reader's version), so a
side-by-side table reuses the jobs of single-model fact sheets. Nothing is inferred: a fact the
files do not hold is shown as absent, and the note under the table says where each fact came from.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from .. import lineage as lineages
from .. import svg
from ..errors import ModelNotFound
from ..modelfacts import READER_VERSION
from ..render import PageRender
from ..specs import Body, check_name, preview
from ..types import Context, Job, Kind, Planned

# every fact the table can show, in its default order; `facts:` picks and orders a subset
FACTS = ("pipeline", "components", "architecture", "parameters", "files", "dtypes", "card",
         "license", "base_model", "datasets", "language", "tags", "source", "fingerprint")
SECTION = {"pipeline": "Pipeline", "components": "Pipeline", "architecture": "Architecture",
           "parameters": "Weights", "files": "Weights", "dtypes": "Weights",
           "card": "Model card", "license": "Model card", "base_model": "Model card",
           "datasets": "Model card", "language": "Model card", "tags": "Model card",
           "source": "Identity", "fingerprint": "Identity"}
MAX_MODELS = 8
# config keys worth a row, by component kind (the first prefix that matches a component's name)
ARCH_KEYS = (
    (("unet", "prior", "decoder"),
     ("sample_size", "in_channels", "block_out_channels", "layers_per_block",
      "cross_attention_dim", "attention_head_dim", "transformer_layers_per_block")),
    (("transformer",),
     ("sample_size", "patch_size", "num_layers", "num_attention_heads", "attention_head_dim",
      "joint_attention_dim", "in_channels")),
    (("text_encoder",),
     ("model_type", "hidden_size", "d_model", "num_hidden_layers", "num_layers",
      "num_attention_heads", "num_heads", "vocab_size", "max_position_embeddings",
      "projection_dim")),
    (("tokenizer",), ("model_max_length",)),
    (("vae", "movq"),
     ("latent_channels", "block_out_channels", "sample_size", "scaling_factor")),
    (("scheduler",),
     ("prediction_type", "num_train_timesteps", "beta_schedule", "timestep_spacing")),
)
COMPONENT_ORDER = ("unet", "transformer", "prior", "decoder", "text_encoder", "tokenizer", "vae",
                   "movq", "scheduler")
DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
          "F8_E4M3": "float8_e4m3", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
          "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
HOW = ("Read from model_index.json, component configs, safetensors headers (no weights loaded) "
       "and the README.md model card's YAML front matter. Parameters are the elements of "
       "floating-point tensors listed in the safetensors headers. “absent” means the files do "
       "not hold the fact; nothing is inferred. A card's values are its author's claims, "
       "copied here unchecked.")


@dataclass(frozen=True)
class Column:
    alias: str  # what the author wrote
    ref: str  # what it resolved to, as a page may show it (never an absolute path)
    source: str  # builtin | folder | hf-cache
    fingerprint: str


@dataclass(frozen=True)
class EcosystemSpec:
    id: str | None
    models: tuple[Column, ...]
    facts: tuple[str, ...]
    caption: str | None
    lineage: lineages.Lineage | None = None


def parse(body: Body, ctx: Context) -> EcosystemSpec:
    if body.has("model") and body.has("models"):
        raise body.error("models", "give either model or models, not both")
    key = "models" if body.has("models") else "model"
    if key == "model":
        names = (body.take_name("model", "default"),)
    else:
        names = body.take_str_list("models")
        if len(names) > MAX_MODELS:
            raise body.error(key, f"lists {len(names)} models; at most {MAX_MODELS} side by side")
    columns: list[Column] = []
    for i, name in enumerate(names):
        at = f"models[{i}]" if key == "models" else None
        check_name(name, lambda m, at=at: body.error(key, m, at=at))
        if name in (c.alias for c in columns):
            raise body.error(key, f"lists {preview(name)} twice", at=at)
        try:
            model = ctx.resolver.resolve(name)
        except ModelNotFound as exc:
            raise body.error(key, str(exc), at=at) from None
        columns.append(Column(name, model.shown(ctx.root), model.source, model.fingerprint))
    facts = body.take_str_list("facts", FACTS)
    for i, fact in enumerate(facts):
        if fact not in FACTS:
            near = difflib.get_close_matches(fact, FACTS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise body.error("facts", f"has unknown fact {preview(fact)} (known: "
                             f"{', '.join(FACTS)}){hint}", at=f"facts[{i}]")
        if fact in facts[:i]:
            raise body.error("facts", "lists a fact twice", at=f"facts[{i}]")
    lineage = None
    if body.take_bool("lineage", False):
        amap = None
        if body.has("actors"):
            from .actors import check_sources, data_file  # one kind reads the other's files

            amap = data_file(body, ctx, "actors")
            check_sources(amap, ctx)
        lineage = lineages.trace([c.alias for c in columns], ctx.resolver, amap)
    elif body.has("actors"):
        raise body.error("actors", "is read for the lineage; add `lineage: true`")
    return EcosystemSpec(id=body.take_str("id", None), models=tuple(columns), facts=facts,
                         caption=body.take_str("caption", None), lineage=lineage)


def expand(spec: EcosystemSpec, ctx: Context) -> list[Job]:
    jobs = []
    for column in spec.models:
        model = ctx.resolver.resolve(column.alias)
        inputs: dict[str, Any] = {"model": model.fingerprint, "reader": READER_VERSION}
        if model.card:  # the fingerprint covers weights and configs, not the card
            inputs["card"] = model.card
        run = {"model": model.name, "ref": model.ref, "source": model.source, "path": model.path}
        jobs.append(Job("ecosystem.facts", inputs, group=("ecosystem",), run=run))
    return jobs


# -- rendering --------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ", ".join(value) if value else "none listed (an empty list)"
    return json.dumps(value, ensure_ascii=False)


def _value(value: Any, note: str | None = None) -> dict[str, Any]:
    return {"text": _text(value), "absent": False, "note": note}


def _absent(note: str) -> dict[str, Any]:
    return {"text": "absent", "absent": True, "note": note}


def _count(n: int) -> str:
    for size, unit in ((10**9, "B"), (10**6, "M"), (10**3, "k")):
        if n >= size:
            return f"{n:,} ({n / size:.3g} {unit})"
    return f"{n:,}"


def _bytes(n: int) -> str:
    for size, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= size:
            return f"{n / size:.3g} {unit} ({n:,} bytes)"
    return f"{n:,} bytes"


def _order(names: set[str]) -> list[str]:
    def rank(name: str) -> tuple[int, str]:
        for i, prefix in enumerate(COMPONENT_ORDER):
            if name.startswith(prefix):
                return i, name
        return len(COMPONENT_ORDER), name

    return sorted(names, key=rank)


def _arch_keys(component: str) -> tuple[str, ...]:
    for prefixes, keys in ARCH_KEYS:
        if component.startswith(prefixes):
            return keys
    return ()


def _component_cell(facts: dict[str, Any], name: str) -> dict[str, Any]:
    comp = facts["components"].get(name)
    if comp is None:
        return _absent("not in model_index.json")
    if not comp["included"]:
        return _value("not included", "null in model_index.json")
    return _value(f"{comp['class']} ({comp['library']})")


def _arch_cell(facts: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    comp = facts["components"].get(name)
    if comp is None or not comp["included"]:
        return _absent(f"no {name} component")
    if key == "vocab (tokens)":
        if comp.get("vocab_size") is None:
            return _absent(f"no vocab.json or tokenizer.json vocabulary in {name}/")
        return _value(f"{comp['vocab_size']:,}", f"counted in the files of {name}/")
    if not isinstance(comp.get("config"), dict):
        return _absent(f"no readable config in {name}/")
    if key not in comp["config"]:
        return _absent(f"not in {comp['config_file']}")
    return _value(comp["config"][key])


def _weights_of(comp: dict[str, Any] | None) -> bool:
    return bool(comp and (comp.get("weights") or comp.get("other_weight_files")))


def _params_cell(facts: dict[str, Any], name: str) -> dict[str, Any]:
    comp = facts["components"].get(name)
    if not _weights_of(comp):
        return _absent(f"no weight files in {name}/")
    assert comp is not None
    if comp["parameters"] is None:
        errors = [w["error"] for w in comp["weights"] if "error" in w]
        if errors:
            return _absent(errors[0])
        return _absent(f"weights only in {', '.join(comp['other_weight_files'])}; "
                       "only safetensors headers are read")
    note = None
    if comp["counted_variant"] or len({w["variant"] for w in comp["weights"]}) > 1:
        note = f"counted in the {comp['counted_variant'] or 'default'} weight files"
    if comp["other_elements"]:
        note = ((note + "; ") if note else "") + \
            f"{comp['other_elements']:,} non-float elements (buffers) not counted"
    return _value(_count(comp["parameters"]), note)


def _files_cell(facts: dict[str, Any], name: str) -> dict[str, Any]:
    comp = facts["components"].get(name)
    if not _weights_of(comp):
        return _absent(f"no weight files in {name}/")
    assert comp is not None
    files = [w["file"].rpartition("/")[2] for w in comp["weights"]]
    others = [f.rpartition("/")[2] for f in comp["other_weight_files"]]
    n = len(files)
    text = _bytes(comp["weight_bytes"]) + f" in {n} safetensors file{'s' * (n != 1)}"
    note = ", ".join(files + [f"{o} (not read)" for o in others])
    return _value(text, note)


def _card_cell(facts: dict[str, Any], key: str) -> dict[str, Any]:
    card = facts["card"]
    if card["file"] is None:
        return _absent("no README.md model card")
    if card["front_matter"] != "present":
        return _absent(f"README.md has {'no' if card['front_matter'] == 'absent' else 'unreadable'}"
                       " YAML front matter")
    if card.get(key) is None:
        return _absent(f"no '{key}' in the card's front matter")
    if key == "license" and (card.get("license_name") or card.get("license_link")):
        extra = ", ".join(_text(card[k]) for k in ("license_name", "license_link") if card.get(k))
        return _value(f"{_text(card['license'])} ({extra})")
    return _value(card[key])


def _rows(fact: str, cols: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table rows of one fact: [{label, cells}] with one cell per column."""
    read = [c["facts"] for c in cols if c["facts"] is not None]

    def row(label: str, get: Any, code: bool = True, value_code: bool = False) -> dict[str, Any]:
        cells = [get(c["facts"]) if c["facts"] is not None else None for c in cols]
        return {"label": label, "code": code, "value_code": value_code, "cells": cells}

    def comps(pred: Any = lambda c: True) -> list[str]:
        return _order({n for f in read for n, c in f["components"].items() if pred(c)})

    if fact == "source":
        return [{"label": "source", "code": False, "value_code": False, "cells": [
            _value(f"{c['column'].source}: {c['column'].ref}") for c in cols]}]
    if fact == "fingerprint":
        return [{"label": "fingerprint", "code": False, "value_code": True, "cells": [
            _value(c["column"].fingerprint) for c in cols]}]
    if fact == "pipeline":
        return [
            row("pipeline class", lambda f: _value(f["pipeline_class"]) if f["pipeline_class"]
                else _absent("no _class_name in model_index.json"), code=False, value_code=True),
            row("saved with diffusers", lambda f: _value(f["diffusers_version"])
                if f["diffusers_version"] else _absent("no _diffusers_version in model_index.json"),
                code=False),
        ]
    if fact == "components":
        return [row(name, lambda f, n=name: _component_cell(f, n), value_code=True)
                for name in comps()]
    if fact == "architecture":
        rows = []
        for name in comps(lambda c: c["included"]):
            keys = list(_arch_keys(name))
            if name.startswith("tokenizer"):
                keys.append("vocab (tokens)")
            for key in keys:
                present = any(
                    (f["components"].get(name) or {}).get("vocab_size") is not None
                    if key == "vocab (tokens)"
                    else key in ((f["components"].get(name) or {}).get("config") or {})
                    for f in read)
                if present:
                    rows.append(row(f"{name} {key}", lambda f, n=name, k=key: _arch_cell(f, n, k),
                                    value_code=key != "vocab (tokens)"))
        return rows
    if fact == "parameters":
        names = comps(lambda c: _weights_of(c))
        rows = [row(f"{n} parameters", lambda f, n=n: _params_cell(f, n)) for n in names]

        def total(f: dict[str, Any]) -> dict[str, Any]:
            if f["parameters_total"] is None:
                return _absent("no safetensors weights could be counted")
            note = None
            if f["parameters_uncounted"]:
                note = f"not counted: {', '.join(f['parameters_uncounted'])}"
            return _value(_count(f["parameters_total"]), note)

        return [*rows, row("total parameters", total, code=False)]
    if fact == "files":
        names = comps(lambda c: _weights_of(c))
        rows = [row(f"{n} weights", lambda f, n=n: _files_cell(f, n)) for n in names]
        rows.append(row("all component weights", lambda f: _value(_bytes(f["weight_bytes_total"]))
                        if f["weight_bytes_total"] else _absent("no safetensors weights"),
                        code=False))
        if any(f["loose_weights"] for f in read):
            rows.append(row("files beside the components", lambda f: _value(
                ", ".join(w["file"] + (f" ({_bytes(w['bytes'])})" if "bytes" in w else "")
                          for w in f["loose_weights"]),
                "single-file checkpoints; not counted in the totals")
                if f["loose_weights"] else _absent("none"), code=False))
        return rows
    if fact == "dtypes":
        return [row("dtypes", lambda f: _value(", ".join(DTYPES.get(d, d) for d in f["dtypes"]),
                                               "from safetensors headers")
                    if f["dtypes"] else _absent("no safetensors weights"), code=False)]
    if fact == "card":
        def card(f: dict[str, Any]) -> dict[str, Any]:
            c = f["card"]
            if c["file"] is None:
                return _absent("no README.md")
            return _value({"present": "README.md with YAML front matter",
                           "absent": "README.md without front matter",
                           "invalid": "README.md; front matter unreadable"}[c["front_matter"]])

        return [row("model card", card, code=False)]
    label = {"base_model": "base model", "license": "licence"}.get(fact, fact)
    return [row(label, lambda f: _card_cell(f, fact), code=False)]


def render(planned: Planned, page: PageRender) -> str:
    spec: EcosystemSpec = planned.directive.spec
    cols: list[dict[str, Any]] = []
    for column, job in zip(spec.models, planned.jobs, strict=True):
        record, error = page.record(job), page.failure(job)
        cols.append({"column": column, "error": error,
                     "facts": record["data"] if record and not error else None,
                     "state": "failed" if error else "ok" if record else "missing",
                     "created": record["created"] if record else None})
    sections: list[dict[str, Any]] = []
    for fact in spec.facts:
        title = SECTION[fact]
        if not sections or sections[-1]["title"] != title:
            sections.append({"title": title, "rows": []})
        for r in _rows(fact, cols):
            known = {c["text"] for c in r["cells"] if c is not None}
            r["differs"] = len(cols) > 1 and len(known) > 1
            sections[-1]["rows"].append(r)
    problems = [(c["column"].alias, p) for c in cols if c["facts"]
                for p in c["facts"].get("problems", [])]
    return page.figure("ecosystem.html", planned, {
        "spec": spec, "columns": cols, "sections": [s for s in sections if s["rows"]],
        "how": HOW, "problems": problems, "reader": READER_VERSION,
        "side_by_side": len(cols) > 1, **_lineage(spec, page),
    })


def _lineage(spec: EcosystemSpec, page: PageRender) -> dict[str, Any]:
    """The lineage graph (static SVG, svg.network) and its table, when asked for."""
    if spec.lineage is None:
        return {"lineage": None, "lineage_svg": None}
    from markupsafe import Markup

    from .. import actors as actordata
    from .actors import sources_html

    kinds = {"local model": "model", "named in a card": "model"}
    amap = actordata.ActorMap("lineage", tuple(
        actordata.Actor(name, kinds.get(known, known), None, None, (), 0)
        for name, known in spec.lineage.nodes), ())
    rels = [actordata.Relation(s.child, s.type, s.parent, None, None, s.sources or ("card",), 0)
            for s in spec.lineage.steps]
    drawn = None
    if rels:
        anchor = (spec.id or f"figure-{page.figures + 1}") + "-lineage"
        # svg.py escapes every text it writes
        drawn = Markup(svg.network(amap, [n for n, _ in spec.lineage.nodes], rels,  # noqa: S704
                                   anchor, "Model lineage").svg)
    rows = [{"step": s, "known": dict(spec.lineage.nodes)[s.parent],
             "sources": sources_html(s.sources, page) if s.via == "actors" else None}
            for s in spec.lineage.steps]
    return {"lineage": {"rows": rows, "notes": spec.lineage.notes}, "lineage_svg": drawn}


def describe(job: Job) -> tuple[str, str]:
    return f"model {job.run['model']}", "fact sheet read from the model's files"


KIND = Kind(
    name="ecosystem",
    parse=parse,
    expand=expand,
    render=render,
    runners={"ecosystem.facts": "generator.modelfacts:run"},
    doc="A model's fact sheet from its files (configs, safetensors headers, card), or several "
        "side by side with differences highlighted.",
    describe=describe,
)
