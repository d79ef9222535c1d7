"""Model references: aliases, where a model lives on disk, and its fingerprint (no torch here).

A directive names a model by alias (from the plugin config), by Hugging Face repo id (looked up in
the local HF cache only) or by a local folder in diffusers layout. Resolving reads files and
hashes; loading the weights is the job of backends/.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelNotFound
from .keys import canonical_json, digest

if TYPE_CHECKING:
    from .store import Memo

# The built-in model: Stable Diffusion's architecture in miniature, with seeded random weights.
# Changing anything here changes its fingerprint, so stored images are never confused.
TINY_RECIPE: dict[str, Any] = {
    "version": 1,
    "seed": 0,
    "unet": {
        "sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 32, "attention_head_dim": 4, "norm_num_groups": 8,
    },
    "vae": {
        "sample_size": 64, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    },
    "text_encoder": {
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
        "num_hidden_layers": 2, "max_position_embeddings": 77, "projection_dim": 32,
    },
    "scheduler": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "steps_offset": 1,
                  "set_alpha_to_one": False, "skip_prk_steps": True},
    "defaults": {"steps": 4, "guidance": 7.5},
}
REAL_DEFAULTS = {"steps": 30, "guidance": 7.5}
# The model organism: a miniature Stable Diffusion *trained* on a made world with planted biases
# (scripts/train_organism.py; the world is scripts/organism_world.py). Its weights are committed
# under models/ in unmake's repository and load like any local folder.
ORGANISM = "organism"
ORGANISM_FOLDER = Path(__file__).resolve().parent.parent / "models" / "organism"
ORGANISM_DEFAULTS = {"steps": 20, "guidance": 4.0}
# What a folder's fingerprint hashes: the weights unmake loads and every config, scheduler and
# tokenizer file that changes what they make; not the model card or weights it never loads.
FINGERPRINT_SUFFIXES = (".safetensors", ".json", ".txt", ".model")
NOT_FINGERPRINTED = ("README.md", ".gitattributes")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what to load, and the fingerprint that goes into every cache key."""

    name: str  # what the author wrote (alias or reference)
    ref: str  # what it resolved to: 'tiny', a repo id or a folder
    source: str  # 'builtin' | 'folder' | 'hf-cache'
    path: str  # folder to load from_pretrained from (for tiny: where it is or will be written)
    fingerprint: str
    defaults: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    size: tuple[int, int] | None = None  # remembered native size, for frozen builds
    # a hash of a folder's model card: not part of what the model makes (so not in the
    # fingerprint), but what the `ecosystem` directive reports; hub snapshots and tiny are
    # already pinned by their fingerprint
    card: str | None = None

    def shown(self, root: Path) -> str:
        """Where the model comes from, as a published page may say it: the built-in's name, a
        repo id, or a folder relative to the project; never an absolute path of this machine
        (the full path stays in the local record)."""
        if self.source == "builtin":
            return "built-in tiny"
        if self.ref == ORGANISM:
            return "built-in organism"
        if self.source == "hf-cache":
            return self.ref if not os.path.isabs(self.ref) else "a Hugging Face cache entry"
        try:
            relative = Path(self.path).resolve().relative_to(root.resolve())
        except ValueError:
            return "a folder outside the project"
        return f"./{relative.as_posix()}" if str(relative) != "." else "the project folder"

    def native_size(self) -> tuple[int, int]:
        """Width and height the model was trained at, read from its configs."""
        if self.size:
            return self.size
        if self.source == "builtin":
            unet, vae = TINY_RECIPE["unet"], TINY_RECIPE["vae"]
        else:
            unet = _read_json(Path(self.path, "unet", "config.json")) or {}
            vae = _read_json(Path(self.path, "vae", "config.json")) or {}
        scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
        sample = unet.get("sample_size", 64)
        if isinstance(sample, list):
            return int(sample[1]) * scale, int(sample[0]) * scale
        return int(sample) * scale, int(sample) * scale


def ships_safety_checker(folder: Path) -> bool:
    """Whether a model folder's model_index.json names a safety checker component."""
    index = _read_json(folder / "model_index.json")
    entry = index.get("safety_checker") if isinstance(index, dict) else None
    return isinstance(entry, list) and entry[:1] != [None]


def cache_home() -> Path:
    """Where unmake keeps files for all projects (the built-in model)."""
    base = os.environ.get("UNMAKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "unmake")
    return Path(base)


def hf_hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home, "hub")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def dist_version(dist: str) -> str:
    """An installed distribution's version, or "absent" (what records and fingerprints say)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def tiny_ref(name: str = "tiny") -> ModelRef:
    # Seeded random init depends on the torch and diffusers releases, so both are in the print.
    releases = [dist_version("torch"), dist_version("diffusers")]
    fp = digest(canonical_json([TINY_RECIPE, *releases]))[:16]
    path = cache_home() / f"tiny-v{TINY_RECIPE['version']}-{fp}"
    return ModelRef(name, "tiny", "builtin", str(path), f"tiny:{fp}",
                    dict(TINY_RECIPE["defaults"]))


class Resolver:
    """Turns model names into ModelRefs, memoising folder fingerprints by size and mtime."""

    def __init__(self, aliases: dict[str, str], root: Path, memo: Memo | None = None,
                 frozen: bool = False) -> None:
        self.aliases = aliases
        self.frozen = frozen
        self.root = root
        # the store's "fingerprints" memo; a plain dict (forgotten after the build) without one
        self._memo: dict[str, Any] = memo if memo is not None else {}
        self._resolved: dict[str, ModelRef] = {}

    def resolve(self, name: str) -> ModelRef:
        if name not in self._resolved:
            ref = self.aliases.get(name, name)
            self._resolved[name] = self._resolve(name, ref)
        return self._resolved[name]

    def _resolve(self, name: str, ref: str) -> ModelRef:
        if ref == "tiny":
            return tiny_ref(name)
        try:
            model = self._find(name, ref)
        except ModelNotFound:
            # A frozen build renders from the store on machines without the weights: the
            # fingerprint this reference had when its images were made is still their key.
            known = self._memo.get(f"ref:{ref}")
            if self.frozen and known:
                width, height = known.get("size") or (0, 0)
                return ModelRef(name, ref, known["source"], known["path"], known["fingerprint"],
                                dict(ORGANISM_DEFAULTS if ref == ORGANISM else REAL_DEFAULTS),
                                (width, height) if width else None, known.get("card"))
            raise
        entry = {"source": model.source, "path": model.path, "fingerprint": model.fingerprint,
                 "size": list(model.native_size()), "card": model.card}
        self._remember(f"ref:{ref}", entry)
        return model

    def _find(self, name: str, ref: str) -> ModelRef:
        looked = []
        folder = Path(os.path.expanduser(ref))
        if not folder.is_absolute():
            folder = self.root / folder
        if ref == ORGANISM and not (folder / "model_index.json").is_file():
            folder = ORGANISM_FOLDER  # the built-in, unless the project has a folder of that name
            if not (folder / "model_index.json").is_file():
                raise ModelNotFound(
                    f"'{name}': the built-in model organism ships with unmake's repository "
                    f"(models/organism) and is not at {folder}; install unmake from a checkout "
                    "(`pip install -e .`), or train it with scripts/train_organism.py")
        looked.append(f"folder {folder}")
        if (folder / "model_index.json").is_file():
            card = folder / "README.md"
            defaults = ORGANISM_DEFAULTS if folder == ORGANISM_FOLDER else REAL_DEFAULTS
            return ModelRef(name, ref, "folder", str(folder), self._folder_print(folder),
                            dict(defaults),
                            card=digest(card.read_bytes())[:16] if card.is_file() else None)
        repo, _, revision = ref.partition("@")
        if repo.count("/") == 1 and not repo.startswith((".", "/", "~")):
            entry = hf_hub_cache() / f"models--{repo.replace('/', '--')}"
            looked.append(f"Hugging Face cache {entry}")
            commit = revision or read_text(entry / "refs" / "main")
            if commit and not (entry / "snapshots" / commit).is_dir():
                ref_file = read_text(entry / "refs" / commit)  # a branch or tag name
                commit = ref_file or commit
            snapshot = entry / "snapshots" / commit if commit else None
            if snapshot and (snapshot / "model_index.json").is_file():
                return ModelRef(name, ref, "hf-cache", str(snapshot), f"hf:{repo}@{commit}",
                                dict(REAL_DEFAULTS))
        known = ", ".join(sorted(self.aliases)) or "none"
        alias = f"alias '{name}' -> '{ref}'" if name != ref else f"'{name}'"
        raise ModelNotFound(
            f"{alias} not found; looked in: {'; '.join(looked)}. Known aliases: {known}. "
            "Fix: set `models: {<alias>: <folder or org/repo>}` in the unmake plugin config "
            "(a folder in diffusers layout with model_index.json, or a repo already in the "
            "Hugging Face cache: run `huggingface-cli download org/repo` on a networked machine), "
            "or override with --model ALIAS=REF or UNMAKE_MODEL_<ALIAS>=REF.")

    def _folder_print(self, folder: Path) -> str:
        """A hash of the weight and config files' bytes, memoised by (path, size, mtime)."""
        parts = []
        weights = 0
        for path in sorted(folder.rglob("*")):
            if (not path.is_file() or path.suffix not in FINGERPRINT_SUFFIXES
                    or path.name in NOT_FINGERPRINTED):
                continue
            weights += path.suffix == ".safetensors"
            st = path.stat()
            memo_key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
            if memo_key not in self._memo:
                self._remember(memo_key, _hash_file(path))
            parts.append(f"{path.relative_to(folder)}:{self._memo[memo_key]}")
        if not weights:
            raise ModelNotFound(f"model folder {folder} holds no .safetensors weights "
                                "(unmake loads safetensors only)")
        return "folder:" + digest("\n".join(parts))[:16]

    def _remember(self, key: str, value: Any) -> None:
        remember = getattr(self._memo, "remember", None)
        if remember:
            remember(key, value)
        else:
            self._memo[key] = value


def read_text(path: Path) -> str | None:
    """A small text file's stripped content, or None when it cannot be read."""
    try:
        return path.read_text("utf-8").strip()
    except OSError:
        return None


def _hash_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Aliases set from the environment: UNMAKE_MODEL_<ALIAS>=<ref>."""
    environ = dict(os.environ) if environ is None else environ
    prefix = "UNMAKE_MODEL_"
    return {k[len(prefix):].lower(): v for k, v in environ.items() if k.startswith(prefix) and v}
