"""The datasets of one build as found on disk: Parquet files, schemas, fingerprints, images."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..keys import canonical_json, digest
from .config import (
    COLUMN_VARIANTS,
    PRESET_CHAINS,
    Chain,
    DatasetConfig,
    DatasetError,
    one_line,
    parse_chain,
    parse_dataset,
)

if TYPE_CHECKING:
    from ..store import Memo
    from ..types import Context

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif")  # raster only: never an SVG from data


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
