"""CLIP model references: `clip_models` aliases, where the weights live, fingerprints (no torch).

Contract: `ClipResolver` checks the shape of every declared entry when it is made (ConfigError,
naming the key) and looks for files only when a name is resolved (ModelNotFound), so a frozen
build on a machine without the weights can still fall back to what it remembered. Loading the
weights is the job of backends/clip.py.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, ModelNotFound
from .keys import canonical_json, digest
from .log import log
from .models import cache_home, dist_version, hf_hub_cache, read_text

if TYPE_CHECKING:
    from .types import Context

BUILTIN = "tiny-clip"
# The organism's CLIP, trained beside the `organism` model (scripts/train_organism.py) and
# committed under models/ in unmake's repository; an open_clip folder loaded as `local-dir:`.
ORGANISM_CLIP = "organism-clip"
ORGANISM_CLIP_FOLDER = Path(__file__).resolve().parent.parent / "models" / ORGANISM_CLIP
CONFIG_KEY = "plugins.unmake.clip_models"
ENTRY_KEYS = ("arch", "checkpoint", "hf", "allow_pickle")

# The built-in CLIP: open_clip's CLIP class in miniature with seeded random weights. It knows
# nothing; it lets tests and the example zine run the real measuring code on a CPU. Changing
# anything here changes its fingerprint, so stored measurements are never confused.
TINY_CLIP: dict[str, Any] = {
    "name": "unmake-tiny-clip",  # the open_clip architecture name it is registered under
    "version": 1,
    "seed": 0,
    "model_cfg": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2,
                     "layers": 2},
    },
}

# Weight files of an open_clip Hugging Face repo, in the order open_clip's `local-dir:` loader
# prefers them (factory._find_checkpoint_in_dir), so the file we check is the file it loads.
HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
              "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth")
PICKLE_WHY = ("unpickling a checkpoint can run arbitrary code. Convert it once with "
              "safetensors (`from safetensors.torch import save_file; "
              "save_file(torch.load(PATH, weights_only=True), 'model.safetensors')`), "
              "or set `allow_pickle: true` if you trust the file")


@dataclass(frozen=True)
class ClipRef:
    """A resolved CLIP model: what to load, and the fingerprint that goes into cache keys."""

    name: str  # what the author wrote (an alias, or 'tiny-clip')
    arch: str  # open_clip architecture; 'hf-hub:org/name' when the snapshot's config says it
    source: str  # 'builtin' | 'file' | 'hf-cache' | 'organism'
    path: str  # checkpoint file; HF snapshot or organism folder; for builtin the file it is/will
    # be written to
    fingerprint: str
    allow_pickle: bool = False

    def as_dict(self) -> dict[str, Any]:
        """JSON-able fields, for a job's `run` dict; `ClipRef(**d)` makes it again."""
        return asdict(self)

    def weights(self) -> Path:
        """The weight file open_clip will read (for a snapshot, the one its loader prefers)."""
        if self.source not in ("hf-cache", "organism"):
            return Path(self.path)
        found = [Path(self.path, n) for n in HF_WEIGHTS if Path(self.path, n).is_file()]
        if not found:
            raise ModelNotFound(f"CLIP model '{self.name}': snapshot {self.path} holds none of "
                                f"{', '.join(HF_WEIGHTS)}")
        return found[0]


def is_pickle(path: str | Path) -> bool:
    """Whether open_clip would unpickle this file (it reads only `.safetensors` without pickle)."""
    return not str(path).endswith(".safetensors")


def tiny_clip_ref(name: str = BUILTIN) -> ClipRef:
    """The built-in model's reference; the weights are written by backends/clip.py on first use."""
    # Seeded random init depends on the torch and open_clip releases, so both are in the print.
    releases = [dist_version("torch"), dist_version("open_clip_torch")]
    fp = digest(canonical_json([TINY_CLIP, *releases]))[:16]
    path = cache_home() / f"tiny-clip-v{TINY_CLIP['version']}-{fp}" / "open_clip_model.safetensors"
    return ClipRef(name, TINY_CLIP["name"], "builtin", str(path), f"tiny-clip:{fp}")


def organism_clip_ref(name: str = ORGANISM_CLIP) -> ClipRef:
    """The organism's CLIP: its folder, fingerprinted by the weight file's bytes."""
    weights = ORGANISM_CLIP_FOLDER / "open_clip_model.safetensors"
    if not weights.is_file():
        raise ModelNotFound(f"CLIP model '{name}': the organism's CLIP ships with unmake's "
                            f"repository (models/{ORGANISM_CLIP}) and is not at "
                            f"{ORGANISM_CLIP_FOLDER}; install unmake from a checkout, or train "
                            "it with scripts/train_organism.py")
    with open(weights, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    return ClipRef(name, "unmake-organism-clip", "organism",
                   str(ORGANISM_CLIP_FOLDER), f"organism-clip:{sha[:16]}")


class ClipResolver:
    """Turns CLIP aliases into ClipRefs; file hashes are memoised by (path, size, mtime_ns).

    `memo` is a dict the caller keeps between builds (the store's fingerprints memo); each
    successful resolve also remembers its entry under `clip:<name>` for frozen builds.
    """

    def __init__(self, aliases: dict[str, Any] | None, root: Path, frozen: bool = False,
                 memo: dict[str, Any] | None = None) -> None:
        self.root = root
        self.frozen = frozen
        self.memo: dict[str, Any] = memo if memo is not None else {}
        self.aliases = _validate(aliases)
        self._resolved: dict[str, ClipRef] = {}

    def names(self) -> list[str]:
        """Every name a directive may use."""
        return sorted({*self.aliases, "default", BUILTIN, ORGANISM_CLIP})

    def resolve(self, name: str) -> ClipRef:
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name)
        return self._resolved[name]

    def _resolve(self, name: str) -> ClipRef:
        # 1. Follow string aliases (`default: vitb32`) to a declaration or the built-in.
        key, entry = self._declaration(name)
        if entry is None:
            if key.endswith(f".{ORGANISM_CLIP}") or self._follows_to_organism(name):
                return organism_clip_ref(name)
            return tiny_clip_ref(name)
        # 2. Find the files; a frozen build may fall back to what this entry was last time,
        #    but only if the author has not changed the entry since.
        remembered = self.memo.get(f"clip:{name}")
        try:
            ref = self._find(name, key, entry)
        except ModelNotFound:
            if (self.frozen and isinstance(remembered, dict)
                    and remembered.get("declared") == entry):
                fields = {k: v for k, v in remembered.items() if k != "declared"}
                return ClipRef(name=name, **fields)
            raise
        # 3. Remember it, so a later frozen build without the weights still knows its print.
        fields = {k: v for k, v in ref.as_dict().items() if k != "name"}
        self._remember(f"clip:{name}", {**fields, "declared": entry})
        return ref

    def _follows_to_organism(self, name: str) -> bool:
        current = name
        for _ in range(len(self.aliases) + 1):
            if current == ORGANISM_CLIP:
                return True
            value = self.aliases.get(current)
            if not isinstance(value, str):
                return False
            current = value
        return False

    def _declaration(self, name: str) -> tuple[str, dict[str, Any] | None]:
        """(config key, entry) of a name after following string aliases; None is the built-in."""
        seen = [name]
        current = name
        while True:
            if current in (BUILTIN, ORGANISM_CLIP) or (current == "default"
                                                       and current not in self.aliases):
                return f"{CONFIG_KEY}.{seen[0]}", None
            if current not in self.aliases:
                raise ModelNotFound(_unknown(current, self.names(), via=seen[:-1]))
            value = self.aliases[current]
            if isinstance(value, dict):
                return f"{CONFIG_KEY}.{current}", value
            if value in seen:
                chain = " -> ".join([*seen, value])
                raise ConfigError(f"{CONFIG_KEY}.{current}: aliases go round in a circle: {chain}")
            seen.append(value)
            current = value

    def _find(self, name: str, key: str, entry: dict[str, Any]) -> ClipRef:
        ref = self._locate(name, key, entry)
        if ref.allow_pickle and is_pickle(ref.weights()):  # opted in: said on every build
            log.warning("%s.allow_pickle: CLIP model '%s' loads a pickle checkpoint (%s), "
                        "which can run code when loaded; convert it to .safetensors",
                        key, name, ref.weights().name)
        return ref

    def _locate(self, name: str, key: str, entry: dict[str, Any]) -> ClipRef:
        allow_pickle = bool(entry.get("allow_pickle", False))
        if "checkpoint" in entry:
            written = entry["checkpoint"]
            path = Path(os.path.expanduser(written))
            if not path.is_absolute():
                path = self.root / path
            if not path.is_file():
                where = "" if Path(written).is_absolute() else " (relative to mkdocs.yml)"
                raise ModelNotFound(f"{key}.checkpoint: file {written} not found{where}")
            sha = self._file_sha256(path)
            # the arch is in the print: the same weights under another architecture
            # (ViT-B-32 vs ViT-B-32-quickgelu) compute something else
            return ClipRef(name, entry["arch"], "file", str(path),
                           f"file:{entry['arch']}:{sha[:16]}", allow_pickle)
        return self._find_hf(name, key, entry["hf"], allow_pickle)

    def _find_hf(self, name: str, key: str, written: str, allow_pickle: bool) -> ClipRef:
        """An open_clip repo in the local Hugging Face cache, pinned to its snapshot commit."""
        repo, _, revision = written.partition("@")
        entry = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
        commit = revision or read_text(entry / "refs" / "main")
        if commit and not (entry / "snapshots" / commit).is_dir():
            commit = read_text(entry / "refs" / commit) or commit  # a branch or tag name
        snapshot = entry / "snapshots" / commit if commit else None
        if snapshot is None or not (snapshot / "open_clip_config.json").is_file():
            raise ModelNotFound(
                f"{key}.hf: {written} is not in the Hugging Face cache (looked for "
                f"open_clip_config.json in {snapshot or entry}). Fetch it on a networked "
                f"machine (`hf download {repo}`) and copy the cache here, or set HF_HUB_CACHE")
        ref = ClipRef(name, f"hf-hub:{repo}", "hf-cache", str(snapshot), f"hf:{repo}@{commit}",
                      allow_pickle)
        weights = ref.weights()
        if is_pickle(weights) and not allow_pickle:
            raise ConfigError(f"{key}.hf: the snapshot of {repo} has only pickle weights "
                              f"({weights.name}); unmake refuses them because {PICKLE_WHY}")
        return ref

    def _file_sha256(self, path: Path) -> str:
        st = path.stat()
        # the same key format as models.Resolver, so both share one memo of file hashes
        memo_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        if memo_key not in self.memo:
            with open(path, "rb") as fh:
                self._remember(memo_key, hashlib.file_digest(fh, "sha256").hexdigest())
        return str(self.memo[memo_key])

    def _remember(self, key: str, value: Any) -> None:
        # the store's Memo saves only what changed; a plain dict is simply updated
        remember = getattr(self.memo, "remember", None)
        if remember:
            remember(key, value)
        else:
            self.memo[key] = value


def _validate(aliases: dict[str, Any] | None) -> dict[str, Any]:
    """The config as given, after checking every entry's shape (not its files)."""
    if aliases is None:
        return {}
    if not isinstance(aliases, dict):
        raise ConfigError(f"{CONFIG_KEY}: must be a mapping of alias to model, "
                          f"got {type(aliases).__name__}")
    for alias, value in aliases.items():
        key = f"{CONFIG_KEY}.{alias}"
        if not isinstance(alias, str) or not alias:
            raise ConfigError(f"{CONFIG_KEY}: alias names must be text, got {alias!r}")
        if alias in (BUILTIN, ORGANISM_CLIP):
            raise ConfigError(f"{key}: '{alias}' is a built-in model; choose another alias")
        if isinstance(value, str):
            if value not in (BUILTIN, ORGANISM_CLIP) and value not in aliases:
                raise ConfigError(_unknown(value, sorted({*aliases, BUILTIN, ORGANISM_CLIP}),
                                           via=[alias]))
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: must be '{BUILTIN}', another alias, or a mapping with "
                              f"arch + checkpoint or hf; got {value!r}")
        _validate_entry(key, value)
    return dict(aliases)


def _validate_entry(key: str, entry: dict[str, Any]) -> None:
    for field_name in entry:
        if field_name not in ENTRY_KEYS:
            near = difflib.get_close_matches(str(field_name), ENTRY_KEYS, n=1)
            hint = f"did you mean '{near[0]}'? " if near else ""
            raise ConfigError(f"{key}.{field_name}: unknown key; {hint}"
                              f"allowed: {', '.join(ENTRY_KEYS)}")
    for field_name in ("arch", "checkpoint", "hf"):
        if field_name in entry and (not isinstance(entry[field_name], str)
                                    or not entry[field_name].strip()):
            raise ConfigError(f"{key}.{field_name}: must be text, got {entry[field_name]!r}")
    if not isinstance(entry.get("allow_pickle", False), bool):
        raise ConfigError(f"{key}.allow_pickle: must be true or false, "
                          f"got {entry['allow_pickle']!r}")
    if ("checkpoint" in entry) == ("hf" in entry):
        raise ConfigError(f"{key}: give either `checkpoint` (with `arch`) or `hf`, "
                          f"got {'both' if 'hf' in entry else 'neither'}")
    if "hf" in entry:
        if "arch" in entry:
            raise ConfigError(f"{key}.arch: not used with `hf` (the architecture comes from "
                              "the repo's open_clip_config.json); remove it")
        repo = entry["hf"].partition("@")[0]
        if repo.count("/") != 1 or repo.startswith(("/", ".", "~")) or repo.endswith("/"):
            raise ConfigError(f"{key}.hf: must be a Hugging Face repo id 'org/name' "
                              f"(optionally @revision), got {entry['hf']!r}")
        return
    if "arch" not in entry:
        raise ConfigError(f"{key}.arch: missing; name the open_clip architecture of "
                          f"{entry['checkpoint']} (e.g. ViT-B-32)")
    archs = known_archs()
    if archs and entry["arch"] not in archs:
        near = difflib.get_close_matches(entry["arch"], archs, n=3)
        hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
        raise ConfigError(f"{key}.arch: {entry['arch']!r} is not an open_clip architecture; "
                          f"{hint}(open_clip.list_models() lists them)")
    if is_pickle(entry["checkpoint"]) and not entry.get("allow_pickle", False):
        raise ConfigError(f"{key}.checkpoint: {entry['checkpoint']} is not a .safetensors "
                          f"file; unmake refuses pickle checkpoints because {PICKLE_WHY}")


@cache
def known_archs() -> tuple[str, ...]:
    """open_clip's built-in architecture names, read from its package files without importing
    it (importing open_clip imports torch); empty when open_clip is not installed."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return ()
    folders = [Path(p, "model_configs") for p in spec.submodule_search_locations]
    names = {p.stem for folder in folders if folder.is_dir() for p in folder.glob("*.json")}
    return tuple(sorted({*names, TINY_CLIP["name"]}))


def _unknown(name: str, known: list[str], via: list[str]) -> str:
    near = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean '{near[0]}'? " if near else ""
    through = f" (named by {CONFIG_KEY}.{via[-1]})" if via else ""
    return (f"CLIP model '{name}'{through} is not declared; {hint}known: {', '.join(known)}. "
            f"Declare it under {CONFIG_KEY} in mkdocs.yml")



def for_context(ctx: Context) -> ClipResolver:
    """The build's CLIP resolver, made on first use from `clip_models` and kept on the Context
    (file hashes and frozen-build entries are remembered in the store's fingerprints memo)."""
    found = ctx.cache.get("clip_models")
    if found is None:
        found = ClipResolver(ctx.config.get("clip_models") or {}, ctx.root,
                             frozen=ctx.resolver.frozen, memo=ctx.store.memo("fingerprints"))
        ctx.cache["clip_models"] = found
    return found  # type: ignore[no-any-return]
