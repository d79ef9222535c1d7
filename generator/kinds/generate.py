"""`generate`: prompt variants x seeds x sweeps -> one image job each -> a labelled grid."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from ..errors import ModelNotFound
from ..render import PageRender, common_affixes
from ..specs import Body, check_float, check_int
from ..store import Memo
from ..types import Context, Job, Kind, Output, Planned

SCHEDULERS = ("default", "ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "lms", "unipc", "heun")
# what each parameter accepts, for the directive and for each value of a sweep
SWEEPABLE = ("model", "steps", "guidance", "size", "width", "height", "scheduler", "negative")
AXES = ("prompt", "seed", *SWEEPABLE)
MAX_IMAGES = 4096


@dataclass(frozen=True)
class GenerateSpec:
    id: str | None
    prompts: tuple[str, ...]
    negative: str
    seeds: tuple[int, ...]
    base: dict[str, Any]  # model, steps, guidance, width, height, scheduler (None = model's)
    sweep: tuple[tuple[str, tuple[Any, ...]], ...]
    rows: str | None
    cols: str | None
    caption: str | None

    def axes(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every parameter that takes more than one value, in a fixed order."""
        axes = [("prompt", self.prompts), ("seed", self.seeds), *self.sweep]
        return [(name, values) for name, values in axes if len(values) > 1]


def expand_prompts(templates: tuple[str, ...], error: Any,
                   memo: Memo | None = None) -> tuple[str, ...]:
    """`{a|b}` variants expanded combinatorially (dynamicprompts), in order, duplicates dropped.

    Expansions are remembered in `memo` (kept in the store between builds): parsing a template
    costs milliseconds, which is most of a no-op rebuild of a large site.
    """
    out: list[str] = []
    for template in templates:
        prompts = memo.get(template) if memo is not None else None
        if prompts is None:
            from dynamicprompts.generators import CombinatorialPromptGenerator

            try:
                prompts = list(CombinatorialPromptGenerator().generate(
                    template, max_prompts=MAX_IMAGES + 1))
            except Exception as exc:  # pyparsing and wildcard errors alike
                raise error(f"is not a valid prompt template ({exc.__class__.__name__}: "
                            f"{exc})") from None
            if memo is not None:
                memo.remember(template, prompts)
        out += [p for p in prompts if p not in out]
    return tuple(out)


def parse_seeds(value: Any, error: Any) -> tuple[int, ...]:
    """A count (4 -> 0..3), a list ([1, 7, 42]) or a range ('100-107')."""
    if isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(check_int(value, 1, MAX_IMAGES, error)))
    if isinstance(value, str) and "-" in value.strip("-"):
        lo, _, hi = value.partition("-")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise error(f"must be a count, a list or a range like '100-107', got {value!r}") \
                from None
        if b < a:
            raise error(f"range must go up, got {value!r}")
        return tuple(range(a, b + 1))
    if isinstance(value, list) and value:
        seeds = tuple(check_int(v, 0, 2**63 - 1, error) for v in value)
        if len(set(seeds)) != len(seeds):
            raise error("lists a seed twice")
        return seeds
    raise error(f"must be a count, a list or a range like '100-107', got {value!r}")


def check_param(name: str, value: Any, error: Any, ctx: Context) -> Any:
    """Validate one parameter value (used for plain keys and for each value of a sweep)."""
    if name == "steps":
        return check_int(value, 1, 150, error)
    if name in ("width", "height"):
        value = check_int(value, 8, 4096, error)
        if value % 8:
            raise error(f"must be a multiple of 8, got {value}")
        return value
    if name == "size":
        pair = value if isinstance(value, list) else [value, value]
        if len(pair) != 2:
            raise error(f"must be one number or [width, height], got {value!r}")
        return tuple(check_param("width", v, error, ctx) for v in pair)
    if name == "guidance":
        return check_float(value, 0.0, 30.0, error)
    if name == "scheduler":
        if value not in SCHEDULERS:
            raise error(f"must be one of {', '.join(SCHEDULERS)}; got {value!r}")
        return value
    if name == "model":
        if not isinstance(value, str):
            raise error(f"must be a model alias or reference, got {value!r}")
        try:
            ctx.resolver.resolve(value)
        except ModelNotFound as exc:
            raise error(str(exc)) from None
        return value
    if name == "negative":
        return str(value)
    raise error(f"cannot be swept; sweepable: {', '.join(SWEEPABLE)}")


def parse(body: Body, ctx: Context) -> GenerateSpec:
    def err(key: str) -> Any:
        return lambda message: body.error(key, message)

    memo = ctx.store.memo("prompts", f"dynamicprompts {version('dynamicprompts')}")
    prompts = expand_prompts(body.take_str_list("prompt"), err("prompt"), memo)
    seeds = parse_seeds(body.raw("seeds", 1), err("seeds"))
    base: dict[str, Any] = {}
    for name in ("model", "steps", "guidance", "width", "height", "size", "scheduler"):
        if body.has(name):
            base[name] = check_param(name, body.raw(name), err(name), ctx)
    if "size" in base:
        if "width" in base or "height" in base:
            raise body.error("size", "give either size or width/height, not both")
        base["width"], base["height"] = base.pop("size")

    sweep = []
    for name, values in (body.take_mapping("sweep", {}) or {}).items():
        key = f"sweep.{name}"
        if name not in SWEEPABLE:
            raise body.error(key, f"cannot be swept; sweepable: {', '.join(SWEEPABLE)}")
        if not isinstance(values, list) or len(values) < 2:
            raise body.error(key, f"must list at least two values, got {values!r}")
        if (name in base or (name == "size" and ("width" in base or "height" in base))
                or (name == "negative" and body.data.get("negative") is not None)):
            raise body.error(key, f"is both set and swept; remove '{name}:' or the sweep")
        checked = tuple(check_param(name, v, lambda m, k=key: body.error(k, m), ctx)
                        for v in values)
        if len(set(checked)) != len(checked):
            raise body.error(key, "lists a value twice")
        sweep.append((name, checked))
    if "model" not in base and "model" not in dict(sweep):
        base["model"] = check_param("model", "default", err("model"), ctx)

    grid = body.take_mapping("grid", {}) or {}
    spec = GenerateSpec(
        id=body.take_str("id", None),
        prompts=prompts,
        negative=body.take_str("negative", ""),
        seeds=seeds,
        base=base,
        sweep=tuple(sweep),
        rows=grid.get("rows"),
        cols=grid.get("cols"),
        caption=body.take_str("caption", None),
    )
    varying = [name for name, _ in spec.axes()]
    for axis in ("rows", "cols"):
        value = grid.get(axis)
        if value is not None and value not in varying:
            raise body.error(f"grid.{axis}", f"must name a parameter that varies "
                             f"({', '.join(varying) or 'none varies'}), got {value!r}")
    unknown = set(grid) - {"rows", "cols"}
    if unknown:
        raise body.error(f"grid.{sorted(unknown)[0]}", "is not a known key (known: rows, cols)")
    if spec.rows and spec.rows == spec.cols:
        raise body.error("grid.cols", "must differ from grid.rows")
    count = len(prompts) * len(seeds)
    for _, values in sweep:
        count *= len(values)
    if count > MAX_IMAGES:
        raise body.error(None, f"asks for {count} images; at most {MAX_IMAGES} per directive")
    return spec


def _cells(spec: GenerateSpec) -> list[dict[str, Any]]:
    """One dict of parameter values per image, in axis order."""
    names = ["prompt", "seed", *(n for n, _ in spec.sweep)]
    values = [spec.prompts, spec.seeds, *(v for _, v in spec.sweep)]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def expand(spec: GenerateSpec, ctx: Context) -> list[Job]:
    jobs = []
    for cell in _cells(spec):
        params = {**spec.base, "negative": spec.negative, **cell}
        if "size" in params:
            params["width"], params["height"] = params.pop("size")
        model = ctx.resolver.resolve(params["model"])
        width, height = model.native_size()
        inputs = {
            "model": model.fingerprint,
            "prompt": params["prompt"],
            "negative": params["negative"],
            "seed": params["seed"],
            "steps": params.get("steps", model.defaults["steps"]),
            "guidance": float(params.get("guidance", model.defaults["guidance"])),
            "width": params.get("width", width),
            "height": params.get("height", height),
            "scheduler": params.get("scheduler", "default"),
        }
        run = {"model": model.name, "ref": model.ref, "source": model.source, "path": model.path,
               "shown": model.shown(ctx.root)}
        # one group per model: the runner loads it once and batches by shape itself
        jobs.append(Job("generate.image", inputs, group=(model.fingerprint,), run=run))
    return jobs


def _label(axis: str, value: Any, labels: dict[str, str]) -> str:
    if axis == "prompt":
        return labels[value]
    if axis == "size":
        return f"{value[0]}×{value[1]}"
    return f"{axis} {value}" if axis in ("seed", "steps", "guidance") else str(value)


def render(planned: Planned, page: PageRender) -> str:
    spec: GenerateSpec = planned.directive.spec
    cells = _cells(spec)
    by_cell = dict(zip((tuple(sorted(c.items(), key=str)) for c in cells), planned.jobs,
                       strict=True))
    axes = spec.axes()
    varying = [name for name, _ in axes]
    cols = spec.cols or ("seed" if "seed" in varying else next(iter(varying), None))
    rows = spec.rows or next((a for a in varying if a != cols), None)
    panel_axes = [(n, v) for n, v in axes if n not in (rows, cols)]
    values = dict(axes)
    labels = common_affixes(spec.prompts)

    def job_for(choice: dict[str, Any]) -> Any:
        full = {"prompt": spec.prompts[0], "seed": spec.seeds[0],
                **{n: v[0] for n, v in spec.sweep}, **choice}
        return by_cell[tuple(sorted(full.items(), key=str))]

    panels = []
    for combo in itertools.product(*(v for _, v in panel_axes)) or [()]:
        fixed = dict(zip((n for n, _ in panel_axes), combo, strict=True))
        title = ", ".join(_label(n, v, labels) for n, v in fixed.items())
        row_values = values.get(rows, (None,)) if rows else (None,)
        col_values = values.get(cols, (None,)) if cols else (None,)
        grid_rows = []
        for rv in row_values:
            cells_html = []
            for cv in col_values:
                choice = dict(fixed)
                if rows:
                    choice[rows] = rv
                if cols:
                    choice[cols] = cv
                cells_html.append(page.image_cell(job_for(choice), tuple(varying)))
            grid_rows.append({"label": _label(rows, rv, labels) if rows else "",
                              "cells": cells_html})
        panels.append({
            "title": title,
            "cols": [_label(cols, cv, labels) for cv in col_values] if cols else [""],
            "rows": grid_rows,
        })
    # what the whole figure holds fixed, for its caption
    hidden = set(varying) | {"model"} | ({"width", "height"} if "size" in varying else set())
    fixed_params = {k: v for k, v in planned.jobs[0].inputs.items()
                    if k not in hidden and v != ""}
    if "model" not in varying:
        fixed_params["model"] = planned.jobs[0].run["model"]
    return page.figure("generate.html", planned, {
        "spec": spec, "panels": panels, "row_axis": rows, "col_axis": cols,
        "fixed": fixed_params, "prompts": spec.prompts,
    })


def outputs(planned: Planned) -> list[Output]:
    """Each image with the label of every axis of the figure (what a consumer groups by)."""
    spec: GenerateSpec = planned.directive.spec
    labels = common_affixes(spec.prompts)
    out = []
    for cell, job in zip(_cells(spec), planned.jobs, strict=True):
        axes = {axis: _label(axis, value, labels) for axis, value in cell.items()}
        axes["prompt"] = labels[cell["prompt"]]
        if "model" not in axes:
            axes["model"] = job.run["model"]
        out.append(Output(job, axes))
    return out


def describe(job: Job) -> tuple[str, str]:
    i = job.inputs
    return (f"model {job.run['model']}",
            f"{i['prompt']!r} seed {i['seed']}, {i['steps']} steps, {i['width']}×{i['height']}")


KIND = Kind(
    name="generate",
    parse=parse,
    expand=expand,
    render=render,
    runners={"generate.image": "generator.backends.diffusion:run"},
    doc="Generate images from prompt variants x seeds x sweeps into a labelled grid.",
    produces="images",
    outputs=outputs,
    describe=describe,
)
