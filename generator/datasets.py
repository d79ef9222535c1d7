"""Datasets: LAION-style metadata in Parquet, declared in mkdocs.yml, queried in place by DuckDB.

Declared under the `unmake` plugin in mkdocs.yml (paths relative to mkdocs.yml):

    datasets:
      sample:
        metadata: data/sample/metadata.parquet  # a file, a glob or a list (one or more shards)
        images: data/sample/images              # optional: img2dataset folder <shard>/<key>.jpg
        embeddings: data/sample/embeddings      # optional: CLIP .npy shards, row-aligned
        columns: {aesthetic: AESTHETIC_SCORE}   # optional: LAION name -> the file's own name
        unsafe_threshold: 0.5                   # samples leave out rows with punsafe above it
        hotlink: false                          # true: samples may show remote images by URL
        description: Made-up rows in LAION's shape.
    filter_chains:                              # optional; `sd-v1-improved-aesthetics` ships
      my-chain:
        title: What this chain is
        source: Where it is documented
        stages:
          - {label: "original size ≥ 512", size: ">= 512"}
          - {aesthetic: "> 5"}

LAION column names (any may be missing; a directive that needs one says which): URL, TEXT, WIDTH,
HEIGHT, similarity, punsafe, pwatermark, aesthetic, LANGUAGE, key. A column is found by its name,
then case-insensitively, then under a known variant (AESTHETIC_SCORE, caption…), unless `columns:`
names it.

Conditions (a directive's `filters:` and each stage of a filter chain) are typed:

    aesthetic, similarity, punsafe, pwatermark, width, height: "> 5", ">= 512", "< 0.5", "= 3",
        "!= 0", a bare number (equal to), or a list of these that must all hold ([">= 5", "< 6"])
    size:      the shorter side, min(WIDTH, HEIGHT), compared like a number (">= 512")
    language:  a code or a list of codes, compared case-insensitively with LANGUAGE
    domain:    a registered domain or a list (shutterstock.com matches image.shutterstock.com)

A row with no value in a condition's column does not pass it.

A dataset's fingerprint is a hash of (path, size, mtime_ns) of each Parquet file (and, apart, of
each .npy file): changing a file changes the key of every lookup on that dataset and no other.
Fingerprints and column lists are remembered in the store (memo/datasets.json), so a `--frozen`
build finds the stored lookups on a machine without the data.

The runner (`run`, job type "dataset.lookup") answers one directive in a handful of statements: one
scan of the Parquet that keeps the matching rows (only the columns the directive needs) in a temp
table, then GROUP BYs, counts and a seeded ordering over that table. Every value reaches DuckDB as
a bound parameter and every column name as a quoted identifier.
"""

from __future__ import annotations

import functools
import glob
import itertools
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, UnmakeError
from .keys import canonical_json, digest

if TYPE_CHECKING:
    from .store import Memo, Result
    from .types import Context, Job

ALGO_VERSION = 1  # bump when the same inputs would give a different lookup result
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
                "description")
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
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif")  # raster only: never an SVG from data
MAX_IMAGE_BYTES = 8 << 20
HOST_RE = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^/?#@]*@)?([^/?#:]+)"
TOKEN_RE = r"[\pL\pN]+"  # noqa: S105 (a pattern, not a password)
SIZE_BUCKETS = (256, 512, 768, 1024)  # shorter-side bucket edges
# Function words only: pronouns stay in, since who a caption says "he" or "she" about is a finding.
_STOPWORDS = """
a an the and or but of in on at to for from by with without into onto over under as is are was
were be been being it its this that these those there here not no yes so if then than too very can
will just do does did has have had about after before up down out off all any some more most other
such only own same s t de la le les el en et und der die das des du di da y e o il lo los las un une
ein eine im am zu von mit
"""
STOPWORDS = tuple(sorted(set(_STOPWORDS.split())))  # left out of co-occurrence counts


class DatasetError(UnmakeError):
    """A dataset that cannot be used as declared or as found on disk."""


def quote_ident(name: str) -> str:
    """A column name as a DuckDB identifier: always quoted, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


# -- conditions ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One typed test on a row: `aesthetic > 5`, `language in (en, de)`, `domain in (…)`."""

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

    def sql(self, col: Callable[[str], str], param: Callable[[Any], str]) -> str:
        """SQL text over columns named by `col` (LAION name -> SQL), values bound by `param`."""
        if isinstance(self.value, tuple):
            if self.field == "domain":
                host = host_sql(col("URL"))
                tests = [f"({host} = {p} OR ends_with({host}, '.' || {p}))"
                         for p in (param(v) for v in self.value)]
                return "(" + " OR ".join(tests) + ")"
            language = f"lower(CAST({col('LANGUAGE')} AS VARCHAR))"
            return f"list_contains({param(list(self.value))}, {language})"
        if self.field == "size":
            target = f"LEAST({col('WIDTH')}, {col('HEIGHT')})"
        else:
            target = col(NUMERIC_FIELDS[self.field])
        return f"({target} {self.op} {param(float(self.value))})"


def host_sql(url: str) -> str:
    return f"lower(regexp_extract({url}, '{HOST_RE}', 1))"


def parse_conditions(mapping: Any, error: Callable[[str | None, str], Exception],
                     skip: tuple[str, ...] = ()) -> tuple[Condition, ...]:
    """Typed conditions from a YAML mapping; `error(key, message)` makes the exception to raise."""
    if not isinstance(mapping, dict):
        raise error(None, f"must be a mapping of conditions ({', '.join(CONDITION_FIELDS)}), "
                          f"got {mapping!r}")
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
        if not items or any(isinstance(v, bool | dict | list) or v is None for v in items):
            raise error(f"must be text or a list of text, got {value!r}")
        texts = tuple(sorted({str(v).strip().lower() for v in items}))
        if name == "domain":
            for d in texts:
                if "://" in d or "/" in d or not _DOMAIN.match(d):
                    raise error(f"must be a domain like shutterstock.com (no scheme, no path), "
                                f"got {d!r}")
                ext = extractor()(d)
                if ext.suffix and not ext.domain:
                    raise error(f"{d!r} is a public suffix, not a registered domain; give a "
                                "domain like example.co.uk")
        return [Condition(name, "in", texts)]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise error("must not be an empty list")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | float | str):
            raise error(f"must be a comparison like \"> 5\" or \">= 512\" (or a list of them), "
                        f"got {item!r}")
        match = _COMPARISON.match(str(item))
        if not match:
            raise error(f"must be a comparison like \"> 5\" or \">= 512\" (operators: "
                        f"{' '.join(OPS)}), got {item!r}")
        op, number = match.group(1) or "=", float(match.group(2))
        if name in PROBABILITIES and not 0.0 <= number <= 1.0:
            raise error(f"is a probability: compare it with a number in 0–1, got {number:g}")
        out.append(Condition(name, "=" if op == "==" else op, number))
    return out


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
    for key in ("images", "embeddings", "description"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise ConfigError(f"{where}.{key}: must be text (a path), got {value[key]!r}")
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
                         float(threshold), hotlink, value.get("description") or "")


@dataclass
class Dataset:
    """A declared dataset as found on this machine (or as remembered, in a frozen build)."""

    config: DatasetConfig
    root: Path
    files: tuple[Path, ...]  # absolute Parquet paths (empty when absent)
    shown: tuple[str, ...]  # the same, relative to mkdocs.yml
    fingerprint: str
    schema: dict[str, str]  # the file's column names -> DuckDB-ish types
    present: bool  # False: remembered from the store, the files are not here
    union_by_name: bool = False
    _images_print: str | None = field(default=None, repr=False)

    @property
    def alias(self) -> str:
        return self.config.alias

    def column(self, name: str) -> str | None:
        """The file's column for a LAION column name, or None if it has none."""
        mapped = dict(self.config.columns).get(name)
        if mapped:
            return mapped if mapped in self.schema else None
        if name in self.schema:
            return name
        lower = {c.lower(): c for c in self.schema}
        for candidate in (name, *COLUMN_VARIANTS.get(name, ())):
            if candidate.lower() in lower:
                return lower[candidate.lower()]
        return None

    def require(self, name: str) -> str:
        """The file's column for a LAION name, or a DatasetError saying which one is missing."""
        real = self.column(name)
        if real is None:
            mapped = dict(self.config.columns).get(name)
            hint = (f"plugins.unmake.datasets.{self.alias}.columns.{name} maps it to '{mapped}', "
                    "which is not there" if mapped else
                    f"if it is there under another name, map it with plugins.unmake.datasets."
                    f"{self.alias}.columns.{name}: <name>")
            raise DatasetError(
                f"needs the column '{name}', which dataset '{self.alias}' "
                f"({', '.join(self.shown) or 'its files'}) does not have; its columns: "
                f"{', '.join(self.schema) or 'none'}; {hint}")
        return real

    def images_dir(self) -> Path | None:
        if not self.config.images:
            return None
        return resolve_path(self.root, self.config.images)


def resolve_path(root: Path, text: str) -> Path:
    path = Path(os.path.expanduser(text))
    return path if path.is_absolute() else root / path


def file_print(paths: list[Path], root: Path) -> str:
    """Hash of (path as written relative to the project, size, mtime_ns) of each file."""
    parts = []
    for path in paths:
        st = path.stat()
        try:
            shown = os.path.relpath(path, root)
        except ValueError:
            shown = str(path)
        parts.append([shown, st.st_size, st.st_mtime_ns])
    return digest(canonical_json(parts))[:16]


def folder_print(folder: Path) -> str:
    """A cheap fingerprint of an img2dataset folder: its shard folders and their mtimes (a file
    added to or removed from a shard changes its folder's mtime)."""
    parts = [["", folder.stat().st_mtime_ns]]
    with os.scandir(folder) as it:
        for entry in sorted(it, key=lambda e: e.name):
            parts.append([entry.name, entry.stat(follow_symlinks=True).st_mtime_ns])
    return digest(canonical_json(parts))[:16]


def one_line(exc: BaseException) -> str:
    """An error's message as one printable line (library messages may hold control bytes)."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return re.sub(r"[\x00-\x1f\x7f]", "?", text)


def read_schema(path: Path) -> dict[str, str]:
    """Column names and types from a Parquet footer; one clear error if it is not Parquet."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # ArrowInvalid, OSError: the footer cannot be read
        raise DatasetError(f"{path}: not a readable Parquet file ({one_line(exc)})") from None
    return {f.name: str(f.type) for f in schema}


class Datasets:
    """The datasets and filter chains of one build, validated on first use and cached.

    Only the dataset a directive names is looked for on disk; a site with no `dataset` directive
    never reads any of this.
    """

    def __init__(self, config: dict[str, Any], root: Path, memo: Memo | None,
                 frozen: bool) -> None:
        raw = config.get("datasets") or {}
        if not isinstance(raw, dict):
            raise ConfigError("mkdocs.yml: plugins.unmake.datasets: must map aliases to datasets")
        self.configs = {str(alias): parse_dataset(str(alias), v) for alias, v in raw.items()}
        chains = config.get("filter_chains") or {}
        if not isinstance(chains, dict):
            raise ConfigError("mkdocs.yml: plugins.unmake.filter_chains: must map names to "
                              "chains")
        merged = {**PRESET_CHAINS, **chains}
        self.chains = {str(name): parse_chain(str(name), v) for name, v in merged.items()}
        self.root, self.frozen = root, frozen
        self._memo: Memo | None = memo  # the store's "datasets" memo (None: remember nothing)
        self._found: dict[str, Dataset] = {}

    def get(self, alias: str) -> Dataset:
        if alias not in self.configs:
            known = ", ".join(sorted(self.configs)) or "none declared"
            raise DatasetError(f"unknown dataset '{alias}' (known: {known}); declare it under "
                               "plugins.unmake.datasets in mkdocs.yml")
        if alias not in self._found:
            self._found[alias] = self._locate(self.configs[alias])
        return self._found[alias]

    def chain(self, name: str) -> Chain:
        if name not in self.chains:
            raise DatasetError(f"unknown filter chain '{name}' (known: "
                               f"{', '.join(sorted(self.chains))}); declare it under "
                               "plugins.unmake.filter_chains in mkdocs.yml")
        return self.chains[name]

    def _memo_key(self, cfg: DatasetConfig) -> str:
        return canonical_json([cfg.alias, list(cfg.metadata)])

    def _locate(self, cfg: DatasetConfig) -> Dataset:
        where = f"mkdocs.yml: plugins.unmake.datasets.{cfg.alias}.metadata"
        files: list[Path] = []
        missing = []
        for pattern in cfg.metadata:
            path = resolve_path(self.root, pattern)
            if glob.has_magic(pattern):
                found = sorted(Path(p) for p in glob.glob(str(path)) if Path(p).is_file())
                files += found
                if not found:
                    missing.append(pattern)
            elif path.is_file():
                files.append(path)
            else:
                missing.append(pattern)
        memo_key = self._memo_key(cfg)
        if missing:
            known = self._known(memo_key)
            if self.frozen and known:  # render from the store: the data is not on this machine
                return Dataset(cfg, self.root, (), tuple(known["files"]), known["fingerprint"],
                               dict(known["schema"]), present=False,
                               _images_print=known.get("images"))
            extra = (" (and this store remembers no fingerprint for it, so a frozen build cannot "
                     "find its lookups)" if self.frozen else "")
            raise DatasetError(f"{where}: {', '.join(missing)} not found under {self.root}"
                               f"{extra}")
        schemas = [read_schema(f) for f in files]
        schema: dict[str, str] = {}
        for s in schemas:
            for name, typ in s.items():
                schema.setdefault(name, typ)
        shown = tuple(os.path.relpath(f, self.root) for f in files)
        dataset = Dataset(cfg, self.root, tuple(files), shown, "parquet:" +
                          file_print(files, self.root), schema, present=True,
                          union_by_name=any(set(s) != set(schema) for s in schemas))
        self._remember(memo_key, {"files": list(shown), "fingerprint": dataset.fingerprint,
                                  "schema": schema})
        return dataset

    def images_print(self, dataset: Dataset) -> str | None:
        """Fingerprint of the dataset's local image folder (None when it declares none)."""
        folder = dataset.images_dir()
        if folder is None:
            return None
        if dataset._images_print is None:
            key = self._memo_key(dataset.config)
            if folder.is_dir():
                dataset._images_print = "images:" + folder_print(folder)
                self._remember(key, {**self._known(key, {}),
                                     "images": dataset._images_print})
            elif self.frozen:  # rendering from the store: what the folder was when it ran
                return self._known(key, {}).get("images")
            else:
                raise DatasetError(f"mkdocs.yml: plugins.unmake.datasets.{dataset.alias}.images: "
                                   f"folder {folder} not found")
        return dataset._images_print

    def embeddings_print(self, dataset: Dataset) -> str | None:
        """Fingerprint of the .npy shards (for nearest-neighbour lookups), or None."""
        if not dataset.config.embeddings:
            return None
        path = resolve_path(self.root, dataset.config.embeddings)
        files = sorted(path.glob("*.npy")) if path.is_dir() else sorted(
            Path(p) for p in glob.glob(str(path)))
        if not files:
            raise DatasetError(f"mkdocs.yml: plugins.unmake.datasets.{dataset.alias}.embeddings:"
                               f" no .npy files at {path}")
        return "npy:" + file_print(files, self.root)

    def _known(self, key: str, default: Any = None) -> Any:
        return self._memo.get(key, default) if self._memo is not None else default

    def _remember(self, key: str, entry: dict[str, Any]) -> None:
        if self._memo is not None:
            self._memo.remember(key, entry)


def for_context(ctx: Context) -> Datasets:
    """The build's dataset registry, made on first use and kept on the Context."""
    found = ctx.cache.get("datasets")
    if found is None:
        found = Datasets(ctx.config, ctx.root, ctx.store.memo("datasets"),
                         frozen=ctx.resolver.frozen)
        ctx.cache["datasets"] = found
    return found


# -- domains ------------------------------------------------------------------------------------
@functools.cache
def extractor() -> Any:
    """tldextract on its bundled public suffix list snapshot: no download, no cache folder."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=1 << 16)
def registered_domain(host: str) -> str:
    """shutterstock.com for image.shutterstock.com. Under a suffix the list does not know
    (reserved names like .example, intranet names) the last two labels; an IP address whole."""
    host = host.strip().lower().rstrip(".")
    if not host:
        return ""
    ext = extractor()(host)
    if ext.domain and ext.suffix:
        return f"{ext.domain}.{ext.suffix}"
    if re.fullmatch(r"[\d.]+|\[[\da-f:.]+\]", host):
        return host
    return ".".join(host.split(".")[-2:])


_HOST_PY = re.compile(HOST_RE)


def domain_of(url: str | None) -> str:
    match = _HOST_PY.match(url or "")
    return registered_domain(match.group(1)) if match else ""


# -- queries ------------------------------------------------------------------------------------
def term_regex(term: str) -> str:
    """An RE2 pattern for one word or phrase: ASCII punctuation escaped, any run of whitespace
    between words, and a trailing `*` on a word for any ending (nurse* finds nurses)."""
    words = []
    for word in term.split():
        stem, star = (word[:-1], True) if word.endswith("*") and len(word) > 1 else (word, False)
        escaped = "".join("\\" + ch if ch.isascii() and not ch.isalnum() else ch for ch in stem)
        words.append(escaped + (r"[\pL\pN]*" if star else ""))
    return r"\s+".join(words)


def search_regex(terms: list[str], match: str) -> str:
    """Case-insensitive RE2 pattern matching any of `terms`; whole words unless `match` is
    'substring'. Word edges are Unicode-aware (RE2's \\b knows ASCII letters only), and only
    where a term starts or ends with a letter or digit (so "<script>" needs no edge)."""
    if match == "substring":
        return "(?i)(?:" + "|".join(term_regex(t) for t in terms) + ")"
    edge = r"[^\pL\pN_]"
    alternatives = []
    for term in terms:
        head = f"(?:^|{edge})" if term[0].isalnum() else ""
        tail = f"(?:$|{edge})" if term[-1].isalnum() or term.endswith("*") else ""
        alternatives.append(f"{head}{term_regex(term)}{tail}")
    return "(?i)(?:" + "|".join(alternatives) + ")"


class Sql:
    """Named bound parameters for one lookup."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f"${name}"

    def only(self, text: str) -> dict[str, Any]:
        """The parameters a statement uses (DuckDB rejects unused named parameters)."""
        used = set(re.findall(r"\$(p\d+)", text))
        return {k: v for k, v in self.params.items() if k in used}


def search_sql(search: dict[str, Any] | None, col: Callable[[str], str], sql: Sql) -> list[str]:
    if not search:
        return []
    text = col("TEXT")
    out = []
    match = search["match"]
    if search["any"]:
        out.append(f"regexp_matches({text}, {sql.param(search_regex(search['any'], match))})")
    out += [f"regexp_matches({text}, {sql.param(search_regex([t], match))})"
            for t in search["all"]]
    if search["none"]:
        out.append(f"NOT coalesce(regexp_matches({text}, "
                   f"{sql.param(search_regex(search['none'], match))}), false)")
    return out


def conditions_from(normal: list[list[Any]]) -> list[Condition]:
    return [Condition(f, op, tuple(v) if isinstance(v, list) else v) for f, op, v in normal]


FACETS = ("domain", "language", "aesthetic", "size")
SAMPLE_COLUMNS = ("key", "TEXT", "URL", "WIDTH", "HEIGHT", "aesthetic", "punsafe", "pwatermark",
                  "similarity", "LANGUAGE")


FACET_KEYS = {"domain": "_host", "language": "_lang", "aesthetic": "_aes", "size": "_size"}


def lookup(con: Any, inputs: dict[str, Any], run: dict[str, Any],
           images: ImageFolder) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    """Answer one directive: counts, facets, filter lens, co-occurrence, sample.

    One scan of the Parquet files finds the matching rows. Counts, facets and the lens come from
    one aggregate over them (GROUPING SETS, one set per facet and one for the totals). Only when
    a sample or co-occurrence needs the rows themselves are the matches kept, in a temp table
    holding just the columns those steps read; otherwise the aggregate reads the scan directly.
    """
    query = inputs["query"]
    columns: dict[str, str] = inputs["columns"]  # LAION name -> file column (those in the file)
    facets, lens = query["facets"], query["lens"]
    sample, cooc = query["sample"], query["cooccurrence"]
    threshold = inputs["unsafe_threshold"]
    # unsafe rows are held back from samples, so they are counted only where there is one
    has_punsafe = bool(sample) and "punsafe" in columns and threshold is not None
    sql = Sql()
    union = ", union_by_name=true" if run.get("union_by_name") else ""
    files = sql.param(list(run["files"]))
    rows_id = ", filename=true, file_row_number=true" if sample or cooc else ""
    source = f"read_parquet({files}{rows_id}{union})"

    def src_col(name: str) -> str:
        return quote_ident(columns[name])

    # 1. The matching rows: search and filters over the files, with the columns later steps read.
    where = search_sql(query["search"], src_col, sql)
    where += [c.sql(src_col, sql.param) for c in conditions_from(query["filters"])]
    keep: dict[str, str] = {}
    if "domain" in facets:
        keep["_host"] = host_sql(src_col("URL"))
    if "language" in facets:
        keep["_lang"] = f"CAST({src_col('LANGUAGE')} AS VARCHAR)"
    if "aesthetic" in facets:
        keep["_aes"] = f"CAST(floor({src_col('aesthetic')}) AS INTEGER)"
    if "size" in facets:
        side = f"LEAST({src_col('WIDTH')}, {src_col('HEIGHT')})"
        cases = " ".join(f"WHEN {side} < {e} THEN {i}" for i, e in enumerate(SIZE_BUCKETS))
        keep["_size"] = f"CASE WHEN {side} IS NULL THEN NULL {cases} ELSE {len(SIZE_BUCKETS)} END"
    needed: set[str] = {"punsafe"} if has_punsafe else set()
    stages = [conditions_from(stage["conditions"]) for stage in (lens or {}).get("stages", [])]
    needed.update(col for stage in stages for cond in stage for col in cond.columns)
    if cooc:
        needed.add("TEXT")
    if sample:
        needed.update(c for c in SAMPLE_COLUMNS if c in columns)
    if sample or cooc:  # a stable order: md5 of (seed, file name, row number)
        keep["_order"] = (f"md5(CAST({sql.param(sample['seed'] if sample else 0)} AS VARCHAR) "
                          "|| '|' || parse_filename(filename) || '|' || "
                          "CAST(file_row_number AS VARCHAR))")
    keep.update((name, src_col(name)) for name in sorted(needed))
    select = ", ".join(f"{expr} AS {quote_ident(alias)}" for alias, expr in keep.items()) or "1"
    matching = f"SELECT {select} FROM {source}" + (f" WHERE {' AND '.join(where)}"
                                                   if where else "")
    statements: list[str] = []

    def execute(text: str) -> Any:
        statements.append(text)
        return con.execute(text, sql.only(text))

    if sample or cooc:
        execute(f"CREATE OR REPLACE TEMP TABLE m AS {matching}")
        relation = "m"
    else:
        relation = f"({matching})"

    # 2. Totals: the row count comes from the Parquet footers.
    total = execute(f"SELECT count(*) FROM read_parquet({files}{union})").fetchone()[0]

    # 3. One aggregate: matches, held back, per facet value, per lens stage.
    aggs = ["count(*)"]
    if has_punsafe:
        aggs += [f"count(*) FILTER (WHERE \"punsafe\" > {sql.param(float(threshold))})",
                 "count(*) FILTER (WHERE \"punsafe\" IS NULL)"]
    cumulative: list[str] = []
    for stage in stages:
        cumulative += [c.sql(quote_ident, sql.param) for c in stage]
        aggs.append(f"count(*) FILTER (WHERE {' AND '.join(cumulative)})")
    used = [FACET_KEYS[f] for f in facets]
    if used:
        sets = ", ".join(f"({c})" for c in used)
        rows = execute(f"SELECT grouping({', '.join(used)}), {', '.join(used)}, "
                       f"{', '.join(aggs)} FROM {relation} "
                       f"GROUP BY GROUPING SETS ({sets}, ())").fetchall()
    else:
        rows = [(0, *row) for row in execute(f"SELECT {', '.join(aggs)} FROM {relation}")
                .fetchall()]
    everything = (1 << len(used)) - 1  # grouping() sets a bit for each column not grouped by
    totals = next(r[1 + len(used):] for r in rows if r[0] == everything)
    matches = totals[0]
    held_back, unknown = (totals[1], totals[2]) if has_punsafe else (None, None)
    data: dict[str, Any] = {"total": total, "matches": matches, "held_back": held_back,
                            "punsafe_unknown": unknown, "files": list(run["shown"])}
    if facets:
        data["facets"] = {}
        for i, facet in enumerate(facets):
            only = everything ^ (1 << (len(used) - 1 - i))
            groups = [(r[1 + i], r[1 + len(used)]) for r in rows if r[0] == only]
            data["facets"][facet] = _facet_rows(facet, groups, query["facet_top"])
    if lens:
        counts = totals[3 if has_punsafe else 1:]
        data["lens"] = {"stages": [{"label": s["label"], "count": n}
                                   for s, n in zip(lens["stages"], counts, strict=True)]}

    # 4. Words and bigrams in matching captions (document frequency), over at most max_rows.
    if cooc:
        data["cooccurrence"] = _cooccurrence(execute, sql, query, matches)

    # 5. A seeded sample: the first n eligible matches in md5 order.
    files_out: dict[str, tuple[bytes, str]] = {}
    if sample:
        data["sample"], files_out = _sample(execute, sql, con, sample, columns, has_punsafe,
                                            threshold, images)
    if sample or cooc:
        execute("DROP TABLE m")
    data["sql"] = statements
    return data, files_out


def _facet_rows(facet: str, groups: list[tuple[Any, int]], top: int) -> dict[str, Any]:
    missing = sum(n for v, n in groups if v is None or v == "")
    present = [(v, n) for v, n in groups if v is not None and v != ""]
    if facet == "domain":
        counts: Counter[str] = Counter()
        for host, n in present:
            counts[registered_domain(host)] += n
        present = list(counts.items())
    if facet in ("domain", "language"):
        present.sort(key=lambda vn: (-vn[1], vn[0]))
        shown, rest = present[:top], present[top:]
        rows = [[str(v), n] for v, n in shown]
        return {"rows": rows, "other": sum(n for _, n in rest), "other_values": len(rest),
                "distinct": len(present), "missing": missing}
    present.sort()
    if facet == "aesthetic":
        rows = [[f"{v}–{v + 1}", n] for v, n in present]
    else:
        edges = SIZE_BUCKETS
        names = [f"< {edges[0]}", *(f"{a}–{b - 1}" for a, b in itertools.pairwise(edges)),
                 f"≥ {edges[-1]}"]
        rows = [[names[v], n] for v, n in present]
    return {"rows": rows, "other": 0, "other_values": 0, "distinct": len(present),
            "missing": missing}


def _cooccurrence(execute: Callable[[str], Any], sql: Sql, query: dict[str, Any],
                  matches: int) -> dict[str, Any]:
    cooc = query["cooccurrence"]
    search = query["search"] or {"all": [], "any": [], "none": []}
    # the query's own words (nurse* covers nurses) are what every matching caption holds
    own = sorted({w for t in (*search["all"], *search["any"]) for w in t.split()})
    stop = sql.param(list(STOPWORDS))
    own_re = sql.param("(?:" + "|".join(term_regex(w) for w in own) + ")") if own else None

    def mine(w: str) -> str:  # a token the query itself asked for
        return f"regexp_full_match({w}, {own_re})" if own_re else "false"

    def plain(w: str) -> str:  # a token worth counting: not a stopword, a number, a letter
        return (f"len({w}) > 1 AND NOT list_contains({stop}, {w}) AND NOT "
                f"regexp_full_match({w}, '[0-9]+')")

    docs = (f"SELECT regexp_extract_all(lower(\"TEXT\"), {sql.param(TOKEN_RE)}) AS t FROM m "
            f"WHERE \"TEXT\" IS NOT NULL ORDER BY _order LIMIT {sql.param(cooc['max_rows'])}")
    top = sql.param(cooc["top"])
    words = execute(
        f"WITH d AS ({docs}) SELECT w, count(*) AS n FROM (SELECT unnest(list_distinct("
        f"list_filter(t, lambda w: {plain('w')} AND NOT {mine('w')}))) AS w "
        f"FROM d) GROUP BY w ORDER BY n DESC, w LIMIT {top}").fetchall()
    bigrams = execute(
        f"WITH d AS ({docs}), p AS (SELECT list_transform(range(1, len(t)), "
        f"lambda i: [t[i], t[i + 1]]) AS pairs FROM d) "
        f"SELECT b, count(*) AS n FROM (SELECT unnest(list_distinct(list_transform("
        f"list_filter(pairs, lambda q: {plain('q[1]')} AND {plain('q[2]')} AND NOT "
        f"({mine('q[1]')} AND {mine('q[2]')})), "
        f"lambda q: q[1] || ' ' || q[2]))) AS b FROM p) "
        f"GROUP BY b ORDER BY n DESC, b LIMIT {top}").fetchall()
    counted = execute(f"SELECT count(*) FROM ({docs})").fetchone()[0]
    return {"docs": counted, "of": matches, "left_out": own,
            "words": [[w, n] for w, n in words], "bigrams": [[b, n] for b, n in bigrams]}


def _sample(execute: Callable[[str], Any], sql: Sql, con: Any, sample: dict[str, Any],
            columns: dict[str, str], has_punsafe: bool, threshold: float | None,
            images: ImageFolder) -> tuple[dict[str, Any], dict[str, tuple[bytes, str]]]:
    shown = [c for c in SAMPLE_COLUMNS if c in columns]
    where = []
    if has_punsafe and not sample["include_unsafe"]:
        where.append(f"coalesce(\"punsafe\" <= {sql.param(float(threshold or 0.0))}, true)")
    if sample["with_images"]:
        keys = images.index()
        con.execute("CREATE OR REPLACE TEMP TABLE imgkeys AS SELECT unnest($k::VARCHAR[]) AS k",
                    {"k": sorted(keys)})
        where.append("CAST(\"key\" AS VARCHAR) IN (SELECT k FROM imgkeys)")
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    eligible = execute(f"SELECT count(*) FROM m{cond}").fetchone()[0]
    rows = execute(f"SELECT {', '.join(quote_ident(c) for c in shown)} FROM m{cond} "
                   f"ORDER BY _order LIMIT {sql.param(sample['n'])}").fetchall()
    out_rows = []
    files: dict[str, tuple[bytes, str]] = {}
    for i, values in enumerate(rows):
        row = dict(zip(shown, values, strict=True))
        item: dict[str, Any] = {
            "caption": row.get("TEXT"), "url": row.get("URL"), "domain": domain_of(row.get("URL")),
            "key": None if row.get("key") is None else str(row["key"]),
            **{k: _plain(row.get(c)) for k, c in (
                ("width", "WIDTH"), ("height", "HEIGHT"), ("aesthetic", "aesthetic"),
                ("punsafe", "punsafe"), ("pwatermark", "pwatermark"),
                ("similarity", "similarity"), ("language", "LANGUAGE"))},
            "image": None,
        }
        path = images.find(item["key"]) if item["key"] is not None else None
        if path is not None:
            blob = path.read_bytes()
            if len(blob) <= MAX_IMAGE_BYTES:
                name = f"sample-{i}"
                files[name] = (blob, path.suffix.lower().lstrip("."))
                item["image"] = name
        out_rows.append(item)
    return {"rows": out_rows, "eligible": eligible}, files


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4)
    return value


class ImageFolder:
    """Local images in img2dataset's layout: <folder>/<shard>/<key>.<ext>."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._index: dict[str, Path] | None = None

    def find(self, key: str) -> Path | None:
        if self.folder is None or not self.folder.is_dir():
            return None
        if self._index is not None:
            return self._index.get(key)
        for shard in {key[:5], key[:-4]}:  # img2dataset: 5-digit shard + 4-digit index
            for ext in IMAGE_EXTS:
                path = self.folder / shard / f"{key}{ext}"
                if path.is_file():
                    return path
        return self.index().get(key)

    def index(self) -> dict[str, Path]:
        """Every image in the folder by key (walked once)."""
        if self._index is None:
            self._index = {}
            if self.folder is not None and self.folder.is_dir():
                for shard in sorted(self.folder.iterdir()):
                    if not shard.is_dir():
                        continue
                    for path in shard.iterdir():
                        if path.suffix.lower() in IMAGE_EXTS:
                            self._index.setdefault(path.stem, path)
        return self._index


def run(jobs: list[Job], options: dict[str, Any]) -> Iterator[tuple[Job, Result | Exception]]:
    """Runner for "dataset.lookup": one DuckDB connection for the group, one lookup per job."""
    from importlib import metadata

    import duckdb

    from .store import Result

    con = duckdb.connect()
    env = {"duckdb": duckdb.__version__, "tldextract": metadata.version("tldextract")}
    folders: dict[str | None, ImageFolder] = {}  # one walk of an image folder per run at most
    try:
        for job in jobs:
            started = time.perf_counter()
            where = job.run.get("images")
            folder = folders.setdefault(where, ImageFolder(Path(where) if where else None))
            try:
                missing = [f for f in job.run["files"] if not Path(f).is_file()]
                if missing:
                    raise DatasetError(f"dataset '{job.run['dataset']}': {missing[0]} not found")
                data, files = lookup(con, job.inputs, job.run, folder)
            except duckdb.Error as exc:
                yield job, DatasetError(f"dataset '{job.run['dataset']}': DuckDB: "
                                        f"{one_line(exc)}")
                continue
            except (OSError, UnmakeError) as exc:
                yield job, exc
                continue
            yield job, Result(data=data, files=files, env=env,
                              seconds=time.perf_counter() - started)
    finally:
        con.close()
