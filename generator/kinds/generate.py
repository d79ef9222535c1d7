"""`generate`: prompt variants x seeds x sweeps -> one image job each -> a labelled grid."""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..errors import ModelNotFound
from ..models import ships_safety_checker
from ..performance import check as check_performance
from ..performance import keyed
from ..render import PageRender, common_affixes, show_bidi
from ..specs import Body, check_float, check_int, check_name, is_text, one_line, preview
from ..store import Memo
from ..types import Context, Job, Kind, Output, Planned, Setting

SCHEDULERS = ("default", "ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "lms", "unipc", "heun")
# what each parameter accepts, for the directive and for each value of a sweep
SWEEPABLE = ("model", "steps", "guidance", "size", "width", "height", "scheduler", "negative")
AXES = ("prompt", "seed", *SWEEPABLE)
MAX_IMAGES = 4096  # per directive: prompts x seeds x swept values
MAX_PROMPT_CHARS = 2000  # per prompt, template or negative; CLIP reads the first 77 tokens
MAX_SEED = 2**63 - 1
EXPLORE_FROM = 3  # varying axes from which a figure gets the explorer (templates/unmake.js)


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


def expand_prompts(templates: tuple[str, ...], error: Callable[..., Exception],
                   memo: Memo | None = None) -> tuple[str, ...]:
    """`{a|b}` variants expanded combinatorially (dynamicprompts), in order, duplicates dropped.

    Each template's prompts are counted from its parse tree before any is made (duplicates
    included), so a template that spells a million is refused with that number, in
    milliseconds; a list of templates may spell MAX_IMAGES in all. Expansions are remembered
    in `memo` (kept in the store between builds): parsing a template costs milliseconds, which
    is most of a no-op rebuild of a large site.

    `error(message, i)` makes the exception for template i (None: for all of them).
    """
    out: dict[str, None] = {}
    spelled = 0
    for i, template in enumerate(templates):
        if len(template) > MAX_PROMPT_CHARS:
            raise error(f"is {len(template)} characters long; at most {MAX_PROMPT_CHARS} "
                        f"per prompt: {preview(template)}", i)
        prompts = memo.get(template) if memo is not None else None
        if not isinstance(prompts, list) or len(prompts) > MAX_IMAGES:  # a memo of old code
            prompts = _expand(template, functools.partial(error, i=i))
            if memo is not None:
                memo.remember(template, prompts)
        spelled += len(prompts)
        if spelled > MAX_IMAGES:
            rest = sum(_spelled(t) for t in templates[i + 1:])
            raise error(f"spells {many(spelled + rest)} prompts; at most {MAX_IMAGES} per "
                        f"directive", None)
        for prompt in prompts:
            if len(prompt) > MAX_PROMPT_CHARS:
                raise error(f"makes a prompt of {len(prompt)} characters; at most "
                            f"{MAX_PROMPT_CHARS} per prompt: {preview(prompt)}", i)
        out.update(dict.fromkeys(prompts))
    return tuple(out)


def _expand(template: str, error: Callable[[str], Exception]) -> list[str]:
    """Every prompt of one template, after counting them from its parse tree."""
    if not template.strip():
        raise error("must not be empty text")
    from dynamicprompts.parser.parse import parse

    try:
        tree = parse(template)
    except Exception as exc:  # pyparsing errors, and RecursionError on braces nested deeply
        raise error(f"is not a valid prompt template ({exc.__class__.__name__}: "
                    f"{one_line(str(exc), 200)})") from None
    try:
        count = count_prompts(tree)
    except _Wildcard as exc:
        raise error(f"uses the wildcard {preview(str(exc))}, but unmake reads no wildcard "
                    "files; write its options out, like {a|b|c}") from None
    except RecursionError:
        raise error("is not a valid prompt template (its { } nest too deeply)") from None
    if count is not None and count > MAX_IMAGES:
        raise error(f"spells {many(count)} prompts; at most {MAX_IMAGES} per directive")
    from dynamicprompts.generators import CombinatorialPromptGenerator

    try:
        prompts = list(CombinatorialPromptGenerator().generate(template,
                                                              max_prompts=MAX_IMAGES + 1))
    except Exception as exc:  # an undefined ${variable}, and the like
        raise error(f"is not a valid prompt template ({exc.__class__.__name__}: "
                    f"{one_line(str(exc), 200)})") from None
    if len(prompts) > MAX_IMAGES:  # a construct count_prompts cannot count
        raise error(f"spells more than {MAX_IMAGES} prompts; at most {MAX_IMAGES} per "
                    "directive")
    prompts = list(dict.fromkeys(prompts))
    if not prompts or prompts == [""]:
        raise error("makes no prompt (each variant of a {2$$a|b} choice must differ)"
                    if not prompts else "makes only an empty prompt")
    return prompts


def _spelled(template: str) -> int:
    """The prompts a later template spells, for a message (1 where it cannot be counted)."""
    from dynamicprompts.parser.parse import parse

    try:
        return count_prompts(parse(template)) or 1
    except Exception:  # it will be reported on its own once the others fit
        return 1


class _Wildcard(Exception):
    """A `__name__` wildcard: dynamicprompts would repeat its name forever, as its value."""


# Counts above this are not worth their digits (a template can spell 10^40,000 prompts in
# 2,000 characters): arithmetic stops there, and the message says "more than" it.
COUNT_CAP = 10**18


def count_prompts(tree: Any) -> int | None:
    """How many prompts a template's parse tree spells (before duplicates are dropped), up to
    COUNT_CAP + 1: a sequence multiplies, a choice {a|b} adds, {2$$a|b|c} counts ordered picks
    of distinct options (as dynamicprompts makes them), a random {~a|b} is one. None when the
    tree holds a construct this does not count."""
    return _count(tree, {})


def many(count: int) -> str:
    """A count as a message states it: exact, or "more than 10^18" past COUNT_CAP."""
    return str(count) if count <= COUNT_CAP else "more than 10^18"


def _count(command: Any, variables: dict[str, Any]) -> int | None:
    from dynamicprompts.commands import (
        LiteralCommand,
        SequenceCommand,
        VariantCommand,
        WildcardCommand,
    )
    from dynamicprompts.commands.variable_commands import (
        VariableAccessCommand,
        VariableAssignmentCommand,
    )
    from dynamicprompts.commands.wrap_command import WrapCommand

    method = getattr(command, "sampling_method", None)
    if method is not None and method.is_nonfinite():  # one value per prompt, drawn anew
        return 1
    if isinstance(command, LiteralCommand):
        return 1
    if isinstance(command, WildcardCommand):
        raise _Wildcard(f"__{command.wildcard}__" if isinstance(command.wildcard, str)
                        else "__…__")
    if isinstance(command, SequenceCommand):
        scope = dict(variables)
        total: int | None = 1
        for token in command.tokens:
            if isinstance(token, VariableAssignmentCommand):
                if token.overwrite or token.name not in scope:
                    scope[token.name] = LiteralCommand("") if token.immediate else token.value
                continue
            n = _count(token, scope)
            total = None if total is None or n is None else min(total * n, COUNT_CAP + 1)
        return total
    if isinstance(command, VariantCommand):
        counted = [_count(option.value, variables) for option in command.variants]
        counts = [n for n in counted if n is not None]
        if len(counts) < len(counted):
            return None
        lo, hi = min(command.min_bound, len(counts)), min(command.max_bound, len(counts))
        # e[k]: the sum over k distinct options of the product of their counts; each such pick
        # comes in k! orders
        e = [1] + [0] * hi
        for n in counts:
            for k in range(hi, 0, -1):
                e[k] = min(e[k] + e[k - 1] * n, COUNT_CAP + 1)
        total = 0
        for k in range(lo, hi + 1):
            total = min(total + math.factorial(min(k, 20)) * e[k], COUNT_CAP + 1)  # 20! > cap
        return total
    if isinstance(command, WrapCommand):
        wrapper, inner = _count(command.wrapper, variables), _count(command.inner, variables)
        return None if wrapper is None or inner is None else min(wrapper * inner,
                                                                  COUNT_CAP + 1)
    if isinstance(command, VariableAccessCommand):
        value = variables.get(command.name, command.default)
        return 1 if value is None else _count(value, variables)
    return None


def parse_seeds(value: Any, error: Callable[..., Exception]) -> tuple[int, ...]:
    """A count (4 -> 0..3), a list ([1, 7, 42]) or a range ('100-107'); the number of seeds is
    checked before a range is made, so '0-1000000000' costs nothing. `error(message, i)` makes
    the exception (i: the list item, or None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return tuple(range(check_int(value, 1, MAX_IMAGES, lambda m: error(m, None))))
    if isinstance(value, str) and "-" in value.strip("-"):
        lo, _, hi = value.partition("-")
        try:
            a, b = int(lo), int(hi)
        except ValueError:
            raise error(f"must be a count, a list or a range like '100-107', got "
                        f"{preview(value)}", None) from None
        if b < a:
            raise error(f"range must go up, got {preview(value)}", None)
        if a < 0 or b > MAX_SEED:
            raise error(f"range must lie in 0–{MAX_SEED}, got {preview(value)}", None)
        if b - a + 1 > MAX_IMAGES:
            raise error(f"range {preview(value)} holds {b - a + 1} seeds; at most "
                        f"{MAX_IMAGES} per directive", None)
        return tuple(range(a, b + 1))
    if isinstance(value, list) and value:
        if len(value) > MAX_IMAGES:
            raise error(f"lists {len(value)} seeds; at most {MAX_IMAGES} per directive", None)
        seeds = tuple(check_int(v, 0, MAX_SEED, lambda m, i=i: error(m, i))
                      for i, v in enumerate(value))
        if len(set(seeds)) != len(seeds):
            first: dict[int, int] = {}
            twice = next(i for i, s in enumerate(seeds) if first.setdefault(s, i) != i)
            raise error("lists a seed twice", twice)
        return seeds
    raise error(f"must be a count, a list or a range like '100-107', got {preview(value)}", None)


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
            raise error(f"must be one number or [width, height], got {preview(value)}")
        return tuple(check_param("width", v, error, ctx) for v in pair)
    if name == "guidance":
        return check_float(value, 0.0, 30.0, error)
    if name == "scheduler":
        if value not in SCHEDULERS:
            raise error(f"must be one of {', '.join(SCHEDULERS)}; got {preview(value)}")
        return value
    if name == "model":
        if not isinstance(value, str):
            raise error(f"must be a model alias or reference, got {preview(value)}")
        check_name(value, error)
        try:
            ctx.resolver.resolve(value)
        except ModelNotFound as exc:
            raise error(str(exc)) from None
        return value
    if name == "negative":
        if not is_text(value):
            raise error(f"must be text, got {preview(value)}")
        if len(str(value)) > MAX_PROMPT_CHARS:
            raise error(f"is {len(str(value))} characters long; at most "
                        f"{MAX_PROMPT_CHARS} per prompt: {preview(str(value))}")
        return str(value)
    raise error(f"cannot be swept; sweepable: {', '.join(SWEEPABLE)}")


def parse(body: Body, ctx: Context) -> GenerateSpec:
    def err(key: str) -> Any:
        return lambda message: body.error(key, message)

    def item_err(key: str) -> Callable[..., Exception]:
        return lambda message, i=None: body.error(
            key, message, at=None if i is None else f"{key}[{i}]")

    # "counted": expansions checked as expand_prompts checks them (older memos are not)
    memo = ctx.store.memo("prompts", f"dynamicprompts {version('dynamicprompts')} counted")
    prompts = expand_prompts(body.take_str_list("prompt"), item_err("prompt"), memo)
    seeds = parse_seeds(body.raw("seeds", 1), item_err("seeds"))
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
            raise body.error(key, f"must list at least two values, got {preview(values)}")
        if (name in base or (name == "size" and ("width" in base or "height" in base))
                or (name == "negative" and body.data.get("negative") is not None)):
            raise body.error(key, f"is both set and swept; remove '{name}:' or the sweep")
        checked = tuple(check_param(name, v, lambda m, k=key, i=i: body.error(
            k, m, at=f"{k}[{i}]"), ctx) for i, v in enumerate(values))
        if len(set(checked)) != len(checked):
            first: dict[Any, int] = {}
            twice = next(i for i, v in enumerate(checked) if first.setdefault(v, i) != i)
            raise body.error(key, "lists a value twice", at=f"{key}[{twice}]")
        sweep.append((name, checked))
    if "model" not in base and "model" not in dict(sweep):
        base["model"] = check_param("model", "default", err("model"), ctx)

    grid = body.take_mapping("grid", {}) or {}
    unknown = sorted(str(k) for k in grid if k not in ("rows", "cols"))
    if unknown:
        raise body.error(f"grid.{unknown[0]}", "is not a known key (known: rows, cols)")
    spec = GenerateSpec(
        id=body.take_str("id", None),
        prompts=prompts,
        negative=check_param("negative", body.raw("negative", ""), err("negative"), ctx),
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
                             f"({', '.join(varying) or 'none varies'}), got {preview(value)}")
    if spec.rows and spec.rows == spec.cols:
        raise body.error("grid.cols", "must differ from grid.rows")
    # the product, counted before a single cell is made
    count = len(prompts) * len(seeds) * math.prod(len(values) for _, values in sweep)
    if count > MAX_IMAGES:
        parts = [f"{len(prompts)} prompt{'s' * (len(prompts) != 1)}",
                 f"{len(seeds)} seed{'s' * (len(seeds) != 1)}",
                 *(f"{len(values)} {name}" for name, values in sweep)]
        raise body.error(None, f"asks for {count} images ({' × '.join(parts)}); at most "
                         f"{MAX_IMAGES} per directive")
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
        jobs.append(image_job(params, ctx))
    return jobs


def image_job(params: dict[str, Any], ctx: Context) -> Job:
    """The `generate.image` job of one image: prompt, negative, seed, model and whatever else
    `params` sets (the model's defaults for the rest). `trail` makes its images here too, so an
    image both ask for is one job."""
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
    if not ctx.config.get("safety_checker", True) and model.source != "builtin" \
            and ships_safety_checker(Path(model.path)):
        # the checker changes what is published (withheld or not): a record made without
        # it must not stand in for one made with it, so turning it off changes the key
        inputs["safety_checker"] = False
    run: dict[str, Any] = {"model": model.name, "ref": model.ref, "source": model.source,
                           "path": model.path, "shown": model.shown(ctx.root)}
    # the config's pipeline options (generator/performance.py): all of them go with the job,
    # so every runner applies them; those that can change pixels change the key
    asked = ctx.cache.get("pipeline_options")
    if asked is None:
        asked = ctx.cache["pipeline_options"] = check_performance(ctx.config)
    group: tuple[Any, ...] = (model.fingerprint,)
    if asked:
        run["pipeline"] = dict(asked)
        group = (model.fingerprint, tuple(sorted(asked.items())))
        if keyed(asked):
            inputs["pipeline"] = keyed(asked)
    # one group per model (and options): the runner loads it once and batches by shape itself
    return Job("generate.image", inputs, group=group, run=run)


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

    # the explorer's record of each cell: its value's index on every varying axis, in the
    # order the panels show the cells (the td's data-unmake-cell)
    explore = len(varying) >= EXPLORE_FROM
    at: list[list[int]] = []
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
                cell = page.image_cell(job_for(choice), tuple(varying))
                if explore:
                    cell["explore"] = len(at)
                    at.append([values[n].index(choice[n]) for n in varying])
                cells_html.append(cell)
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
        "explorer": explorer_json(axes, labels, rows, cols, at) if explore else None,
    })


def explorer_json(axes: list[tuple[str, tuple[Any, ...]]], labels: dict[str, str],
                  rows: str | None, cols: str | None, at: list[list[int]]) -> Markup:
    """What templates/unmake.js needs to explore a figure of three or more axes, as the text of
    a `<script type="application/json">`: each axis's name and value labels (shown as the panels
    show them), the axes the panels put along rows and columns, and each cell's value indices.

    Labels are untrusted (prompts): `<`, `>` and `&` are written as JSON escapes, so no `</script>`
    or `<!--` can end or bend the block, and bidirectional controls are shown as the page shows
    them; the script sets them as text only."""
    names = [name for name, _ in axes]
    data = {
        "axes": [{"name": name, "labels": [show_bidi(_label(name, v, labels)) for v in values]}
                 for name, values in axes],
        "rows": names.index(rows) if rows else 0,
        "cols": names.index(cols) if cols else 1,
        "cells": at,
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return Markup(text)  # noqa: S704 (JSON, with every character that could end the block escaped)


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
    settings=(
        Setting("safety_checker", bool, True, "run the safety checker a model ships with; "
                "`false` turns it off, and every record and figure then says so"),
        # pipeline performance options (generator/performance.py checks them)
        Setting("compile", bool, False, "torch.compile the UNet (keyed)"),
        Setting("attention", str, "default", "attention processors: default, sdpa, math (keyed)"),
        Setting("vae_tiling", bool, False, "decode large images tile by tile (keyed)"),
        Setting("vae_slicing", bool, False, "decode a batch one image at a time (keyed)"),
        Setting("cpu_offload", str, "none", "none, model or sequential; needs CUDA and "
                "accelerate (recorded, not keyed)"),
        Setting("channels_last", bool, False, "the UNet in channels-last memory format (keyed)"),
    ),
    describe=describe,
)
