"""`dataset`: search, filter, facet and sample a LAION-style table; one lookup job a directive.

    ```dataset
    dataset: sample                  # an alias from plugins.unmake.datasets in mkdocs.yml
    search: portrait                 # a word or phrase; a list means any of them; or a mapping:
    #   search: {all: [portrait, woman], any: [nurse*, doctor], none: [cartoon]}
    match: words                     # words (default: whole words; nurse* for any ending)
                                     # or substring; always case-insensitive, over TEXT
    filters:                         # typed conditions, all must hold (see generator.datasets)
      aesthetic: "> 5"
      size: ">= 512"                 # shorter side; also width, height
      pwatermark: "< 0.5"            # also punsafe, similarity; a list is a range: [">= 5", "< 6"]
      language: [en, de]
      domain: [shutterstock.com]     # registered domains; subdomains match
    facets: [domain, language, aesthetic, size]   # or {by: [...], top: 10}
    cooccurrence: 20                 # top words and bigrams in matching captions, or
                                     # {top: 20, max_rows: 100000}
    sample: 12                       # or {n: 12, seed: 0, layout: grid|table,
                                     #     with_images: false, include_unsafe: false}
    lens: sd-v1-improved-aesthetics  # a filter chain: how many matches survive each stage
    caption: What the figure shows.
    id: portraits
    ```

Only `dataset` is required; the totals ("412 of 12,096,835 rows match") are always shown. A
section appears when its key is given. Samples leave out rows whose punsafe is above the dataset's
`unsafe_threshold` (default 0.5) unless `include_unsafe: true`; the figure says how many were held
back. Remote images are never shown by URL unless the dataset sets `hotlink: true`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import datasets as ds
from ..errors import DirectiveError
from ..keys import canonical_json
from ..render import ASSETS, PageRender
from ..specs import Body, check_int, is_text, preview
from ..types import Context, Job, Kind, Planned, Setting

FACET_TITLES = {"domain": "web domain", "language": "language", "aesthetic": "aesthetic score",
                "size": "original size (shorter side, px)"}
FACET_COLUMNS = {"domain": ("URL",), "language": ("LANGUAGE",), "aesthetic": ("aesthetic",),
                 "size": ("WIDTH", "HEIGHT")}
SAMPLE_KEYS = ("n", "seed", "layout", "with_images", "include_unsafe")
LABEL_CHARS = 32  # longest bar label in a chart; the full text is in its tooltip
MAX_TERM_CHARS = 200  # a search term is a word or a phrase, not a paragraph


@dataclass(frozen=True)
class DatasetSpec:
    id: str | None
    caption: str | None
    dataset: str
    search: dict[str, Any] | None  # {"all", "any", "none": [terms], "match"}
    filters: tuple[ds.Condition, ...]
    facets: tuple[str, ...]
    facet_top: int
    cooccurrence: dict[str, int] | None  # {"top", "max_rows"}
    sample: dict[str, Any] | None  # {"n", "seed", "with_images", "include_unsafe"}
    layout: str  # grid | table
    lens: ds.Chain | None

    def query(self) -> dict[str, Any]:
        """The normalised query: what goes into the job key (order-free parts sorted)."""
        return {
            "search": self.search,
            "filters": sorted((c.normal() for c in self.filters), key=canonical_json),
            "facets": sorted(self.facets),
            "facet_top": self.facet_top if self.facets else None,
            "cooccurrence": self.cooccurrence,
            "sample": self.sample,
            "lens": self.lens.normal() if self.lens else None,
        }


def _terms(value: Any, error: Any) -> list[str]:
    """`error(message, i)` makes the exception about item i (None: the whole value)."""
    items = value if isinstance(value, list) else [value]
    at = (lambda i: i) if isinstance(value, list) else (lambda i: None)
    out = []
    for i, item in enumerate(items):
        if not is_text(item):
            raise error(f"must be a word or phrase, or a list of them; got {preview(item)}",
                        at(i))
        term = " ".join(str(item).lower().split())
        if not re.search(r"\w", term):
            raise error(f"needs at least one letter or digit, got {preview(item)}", at(i))
        if len(term) > MAX_TERM_CHARS:
            raise error(f"is a search term of {len(term)} characters; at most "
                        f"{MAX_TERM_CHARS}: {preview(item)}", at(i))
        if term not in out:
            out.append(term)
    if not out:
        raise error("must not be an empty list", None)
    return sorted(out)


def parse_search(body: Body) -> dict[str, Any] | None:
    if not body.has("search"):
        body.used.add("search")
        return None
    value = body.raw("search")
    search: dict[str, Any] = {"all": [], "any": [], "none": []}
    if isinstance(value, dict):
        for key, terms in value.items():
            if key not in search:
                raise body.error(f"search.{key}", "is not a known key (known: all, any, none)")
            search[key] = _terms(terms, lambda m, i, k=key: body.error(
                f"search.{k}", m, at=None if i is None else f"search.{k}[{i}]"))
        if not search["all"] and not search["any"]:
            raise body.error("search", "needs 'all:' or 'any:' terms, not only 'none:'")
    else:
        search["any"] = _terms(value, lambda m, i: body.error(
            "search", m, at=None if i is None else f"search[{i}]"))
    search["match"] = body.take_str("match", "words", choices=("words", "substring"))
    return search


def _need(dataset: ds.Dataset, body: Body, key: str, columns: tuple[str, ...],
          what: str = "") -> None:
    for column in columns:
        try:
            dataset.require(column)
        except ds.DatasetError as exc:
            raise body.error(key, f"{what}{exc}") from None


def parse(body: Body, ctx: Context) -> DatasetSpec:
    # 1. The dataset: declared, found (or remembered, in a frozen build), readable.
    alias = body.take_name("dataset")
    registry = ds.for_context(ctx)
    try:
        dataset = registry.get(alias)
    except ds.DatasetError as exc:
        raise body.error("dataset", str(exc)) from None

    # 2. What to match: search terms and typed filters.
    search = parse_search(body)
    if search is None and body.has("match"):
        raise body.error("match", "applies to 'search:', which is not given")
    if search:
        _need(dataset, body, "search", ("TEXT",))
    filters = ds.parse_conditions(
        body.take_mapping("filters", {}) or {},
        lambda key, m: body.error(f"filters.{key}" if key else "filters", m))
    for cond in filters:
        _need(dataset, body, f"filters.{cond.field}", cond.columns)

    # 3. What to show: facets, co-occurrence, a sample, a filter lens.
    facets, top = _parse_facets(body)
    for facet in facets:
        _need(dataset, body, "facets", FACET_COLUMNS[facet], f"facet '{facet}' ")
    cooc = _parse_cooccurrence(body)
    if cooc:
        _need(dataset, body, "cooccurrence", ("TEXT",))
    sample, layout = _parse_sample(body, dataset)
    lens = None
    if body.has("lens"):
        try:
            lens = registry.chain(body.take_name("lens"))
        except ds.DatasetError as exc:
            raise body.error("lens", str(exc)) from None
        for i, stage in enumerate(lens.stages, 1):
            for cond in stage.conditions:
                _need(dataset, body, "lens", cond.columns,
                      f"stage {i} of '{lens.name}' ({stage.label}) ")
    return DatasetSpec(
        id=body.take_str("id", None), caption=body.take_str("caption", None), dataset=alias,
        search=search, filters=filters, facets=facets, facet_top=top, cooccurrence=cooc,
        sample=sample, layout=layout, lens=lens)


def _parse_facets(body: Body) -> tuple[tuple[str, ...], int]:
    value = body.raw("facets", None)
    if value is None:
        return (), 10
    top = 10
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in ("by", "top"))
        if unknown:
            raise body.error(f"facets.{unknown[0]}", "is not a known key (known: by, top)")
        if "top" in value:
            top = check_int(value["top"], 1, 100, lambda m: body.error("facets.top", m))
        value = value.get("by")
        key = "facets.by"
    else:
        key = "facets"
    items = value if isinstance(value, list) else [value]
    if value is None or not items:
        raise body.error(key, f"must list facets ({', '.join(ds.FACETS)})")
    out: list[str] = []
    for i, item in enumerate(items):
        at = f"{key}[{i}]" if isinstance(value, list) else None
        if item not in ds.FACETS:
            raise body.error(key, f"must list facets from {', '.join(ds.FACETS)}; got "
                             f"{preview(item)}", at=at)
        if item in out:
            raise body.error(key, f"lists '{item}' twice", at=at)
        out.append(item)
    return tuple(out), top


def _parse_cooccurrence(body: Body) -> dict[str, int] | None:
    value = body.raw("cooccurrence", None)
    if value is None or value is False:
        return None
    top, max_rows = 20, 100_000
    if isinstance(value, dict):
        unknown = sorted(str(k) for k in value if k not in ("top", "max_rows"))
        if unknown:
            raise body.error(f"cooccurrence.{unknown[0]}",
                             "is not a known key (known: top, max_rows)")
        top = check_int(value.get("top", top), 1, 200,
                        lambda m: body.error("cooccurrence.top", m))
        max_rows = check_int(value.get("max_rows", max_rows), 1, 10_000_000,
                             lambda m: body.error("cooccurrence.max_rows", m))
    elif value is not True:
        top = check_int(value, 1, 200, lambda m: body.error(
            "cooccurrence", m + " (give a count of words, true, or {top, max_rows})"))
    return {"top": top, "max_rows": max_rows}


def _parse_sample(body: Body, dataset: ds.Dataset) -> tuple[dict[str, Any] | None, str]:
    value = body.raw("sample", None)
    layout = "grid" if dataset.config.images else "table"
    if value is None:
        return None, layout
    if not isinstance(value, dict):
        value = {"n": value}
    for key in value:
        if key not in SAMPLE_KEYS:
            raise body.error(f"sample.{key}", f"is not a known key (known: "
                             f"{', '.join(SAMPLE_KEYS)})")
    n_key = "sample.n" if "sample.n" in body.key_lines else "sample"  # `sample: 12` names n
    n = check_int(value.get("n", 12), 1, 500, lambda m: body.error(n_key, m))
    seed = check_int(value.get("seed", 0), 0, 2**31 - 1, lambda m: body.error("sample.seed", m))
    layout = value.get("layout", layout)
    if layout not in ("grid", "table"):
        raise body.error("sample.layout", f"must be one of grid, table; got {preview(layout)}")
    flags = {}
    for key in ("with_images", "include_unsafe"):
        flag = value.get(key, False)
        if not isinstance(flag, bool):
            raise body.error(f"sample.{key}", f"must be true or false, got {preview(flag)}")
        flags[key] = flag
    if flags["with_images"]:
        if not dataset.config.images:
            raise body.error("sample.with_images", f"dataset '{dataset.alias}' declares no "
                             f"local images (plugins.unmake.datasets.{dataset.alias}.images)")
        _need(dataset, body, "sample.with_images", ("key",))
    return {"n": n, "seed": seed, **flags}, layout


def expand(spec: DatasetSpec, ctx: Context) -> list[Job]:
    registry = ds.for_context(ctx)
    dataset = registry.get(spec.dataset)
    columns = {name: real for name in ds.LAION_COLUMNS if (real := dataset.column(name))}
    images = None
    if spec.sample and dataset.config.images and "key" in columns:
        try:
            images = registry.images_print(dataset)
        except ds.DatasetError as exc:  # the plan adds this directive's file:line
            raise DirectiveError(str(exc), key="sample") from None
    inputs = {
        "algo": ds.ALGO_VERSION,
        "dataset": dataset.fingerprint,
        "query": spec.query(),
        "columns": columns,
        "unsafe_threshold": dataset.config.unsafe_threshold if "punsafe" in columns else None,
        "hotlink": dataset.config.hotlink,
        "images": images,
    }
    folder = dataset.images_dir()
    run = {"dataset": spec.dataset, "files": [str(f) for f in dataset.files],
           "shown": list(dataset.shown), "union_by_name": dataset.union_by_name,
           "images": str(folder) if images and folder else None}
    return [Job("dataset.lookup", inputs, group=(spec.dataset,), run=run)]


# -- rendering ----------------------------------------------------------------------------------
def _pct(part: int, whole: int) -> str:
    if not whole:
        return "–"
    share = 100.0 * part / whole
    return f"{share:.1f} %" if share >= 0.1 or share == 0 else "< 0.1 %"


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def chart(bars: list[tuple[str, int]], whole: int) -> dict[str, Any]:
    """Geometry of a horizontal bar chart: label, bar and count on each row (drawn as SVG)."""
    row_h, label_w, bar_w, num_w = 18, 220, 260, 110
    top = max((n for _, n in bars), default=0) or 1
    items = []
    for i, (label, n) in enumerate(bars):
        items.append({"y": i * row_h, "label": _short(label), "full": label,
                      "w": round(bar_w * n / top, 1), "text": f"{n:,} ({_pct(n, whole)})"})
    return {"items": items, "width": label_w + bar_w + num_w, "height": max(1, len(bars)) * row_h,
            "label_w": label_w, "bar_x": label_w + 6, "row_h": row_h, "bar_w": bar_w}


def safe_link(url: Any) -> str | None:
    """A URL that may go in an href: http(s) only, so no javascript: or data: from the data."""
    if not isinstance(url, str):
        return None
    text = url.strip()
    if re.match(r"^https?://[^\s]+$", text, re.IGNORECASE) and not re.search(r"[\x00-\x1f]",
                                                                            text):
        return text
    return None


def describe_search(search: dict[str, Any] | None) -> str:
    if not search:
        return "every row (no search)"
    how = ("whole words" if search["match"] == "words" else "substrings")
    parts = []
    if search["any"]:
        parts.append(" or ".join(f"“{t}”" for t in search["any"]))
    if search["all"]:
        parts.append(" and ".join(f"“{t}”" for t in search["all"]))
    text = " and ".join(f"({p})" if len(parts) > 1 else p for p in parts)
    if search["none"]:
        text += " but not " + " or ".join(f"“{t}”" for t in search["none"])
    return f"captions containing {text} ({how}, case-insensitive)"


def describe_filters(filters: list[list[Any]]) -> str:
    return "; ".join(c.describe() for c in ds.conditions_from(filters))


def render(planned: Planned, page: PageRender) -> str:
    spec: DatasetSpec = planned.directive.spec
    job = planned.jobs[0]
    record = page.record(job)
    error = page.failure(job)
    context: dict[str, Any] = {
        "spec": spec, "status": "failed" if error else "ok" if record else "missing",
        "error": error, "alias": spec.dataset, "key": job.key,
        "query_text": describe_search(spec.search),
        "filters_text": describe_filters(spec.query()["filters"]),
        "record": None, "facets": [], "cooc": None, "sample": None, "lens": None,
    }
    if record is None or error:
        return page.figure("dataset.html", planned, context)
    data, inputs = record["data"], record["inputs"]
    query = inputs["query"]
    matches = data["matches"]
    match_how = ("regular-expression match (RE2 through DuckDB regexp_matches) over TEXT"
                 if query["search"] else "no caption search")
    context.update(
        record=record, data=data, inputs=inputs, matches=matches, total=data["total"],
        share=_pct(matches, data["total"]), match_how=match_how,
        files=data.get("files", []), env=record.get("env", {}),
        threshold=inputs["unsafe_threshold"],
    )
    context["facets"] = [_facet_view(name, data["facets"][name], matches)
                         for name in spec.facets if name in data.get("facets", {})]
    if "cooccurrence" in data:
        c = data["cooccurrence"]
        context["cooc"] = {
            **c, "word_rows": [(w, n, _pct(n, c["docs"])) for w, n in c["words"]],
            "bigram_rows": [(b, n, _pct(n, c["docs"])) for b, n in c["bigrams"]],
            "word_chart": chart([(w, n) for w, n in c["words"]], c["docs"]),
            "bigram_chart": chart([(b, n) for b, n in c["bigrams"]], c["docs"]),
        }
    if "lens" in data:
        stages = [("all matching rows", matches)] + [(s["label"], s["count"])
                                                     for s in data["lens"]["stages"]]
        rows = []
        for i, (label, n) in enumerate(stages):
            before = stages[i - 1][1] if i else matches
            rows.append({"label": label, "count": n, "of_matches": _pct(n, matches),
                         "of_previous": _pct(n, before) if i else "",
                         "removed": before - n if i else 0,
                         "conditions": describe_filters(query["lens"]["stages"][i - 1][
                             "conditions"]) if i else ""})
        context["lens"] = {"chain": query["lens"], "rows": rows,
                           "chart": chart(stages, matches)}
    if "sample" in data:
        context["sample"] = _sample_view(data["sample"], record, inputs, page)
    return page.figure("dataset.html", planned, context)


def _facet_view(name: str, facet: dict[str, Any], matches: int) -> dict[str, Any]:
    rows = [(label, n, _pct(n, matches)) for label, n in facet["rows"]]
    bars = [(label, n) for label, n, _ in rows]
    if facet["other"]:
        bars.append((f"{facet['other_values']:,} others", facet["other"]))
    if facet["missing"]:
        bars.append(("(no value)", facet["missing"]))
    how = {
        "domain": "registered domain of each URL's host, by the public suffix list bundled with "
                  "tldextract (offline)",
        "language": "the dataset's LANGUAGE column as given (in LAION, a language detector's "
                    "guess from the caption)",
        "aesthetic": "the aesthetic column floored to whole points (in LAION, a small model's "
                     "predicted rating from the image's CLIP embedding)",
        "size": "the shorter side of the original WIDTH × HEIGHT recorded at crawl time",
    }[name]
    return {"name": name, "title": FACET_TITLES[name], "rows": rows, "how": how,
            "other": facet["other"], "other_values": facet["other_values"],
            "missing": facet["missing"], "distinct": facet["distinct"],
            "chart": chart(bars, matches)}


def _sample_view(sample: dict[str, Any], record: dict[str, Any], inputs: dict[str, Any],
                 page: PageRender) -> dict[str, Any]:
    rows = []
    for row in sample["rows"]:
        view = dict(row)
        view["link"] = safe_link(row.get("url"))
        view["local"] = None
        if row.get("image"):
            path = page.r.store.file(record, row["image"])
            art = record["files"][row["image"]]
            site = page.r.publish(f"{ASSETS}/data/{art['sha256']}.{art['ext']}", path)
            view["local"] = page.url_for(site)
        view["remote"] = view["link"] if inputs["hotlink"] and not view["local"] else None
        view["alt"] = (row.get("caption") or "")[:300]
        view["title"] = (row.get("caption") or "")[:500]
        details = [row.get("domain") or "no domain"]
        if row.get("width") and row.get("height"):
            details.append(f"{row['width']}×{row['height']}")
        if row.get("aesthetic") is not None:
            details.append(f"aesthetic {row['aesthetic']:.2f}")
        if row.get("punsafe") is not None:
            details.append(f"punsafe {row['punsafe']:.2f}")
        view["details"] = " · ".join(details)
        rows.append(view)
    query = inputs["query"]["sample"]
    return {**sample, "rows": rows, "seed": query["seed"], "n": query["n"],
            "with_images": query["with_images"], "include_unsafe": query["include_unsafe"],
            "with_local": sum(1 for r in rows if r["local"])}


def describe(job: Job) -> tuple[str, str]:
    return f"dataset {job.run['dataset']}", "one lookup (search, filters, facets, sample, lens)"


KIND = Kind(
    name="dataset",
    parse=parse,
    expand=expand,
    render=render,
    runners={"dataset.lookup": "generator.backends.duckdb_lookup:run"},
    doc="Search, filter, facet and sample a LAION-style dataset; show a filter chain's funnel.",
    settings=(
        Setting("datasets", dict, {}, "datasets by alias: LAION-schema Parquet `metadata`, "
                "optional `images`, `embeddings`, `columns`, `unsafe_threshold`, `hotlink`, "
                "`description`"),
        Setting("filter_chains", dict, {}, "named filter chains for `lens:` (`title`, "
                "`source`, `stages`); `sd-v1-improved-aesthetics` ships built in"),
    ),
    describe=describe,
)
