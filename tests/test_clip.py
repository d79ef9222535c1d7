"""CLIP models: resolving `clip_models` aliases, and the real open_clip backend with tiny-clip.

No mocks: the built-in tiny-clip is written once per test session into a temp cache (or the one
UNMAKE_CACHE names) and loaded on the CPU through open_clip, like a user's checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generator.backends import clip
from generator.clipmodels import TINY_CLIP, ClipRef, ClipResolver, tiny_clip_ref
from generator.errors import ConfigError, ModelNotFound

KEY = "plugins.unmake.clip_models"


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(os.environ.get("UNMAKE_CACHE") or tmp_path_factory.mktemp("clip-cache"))


@pytest.fixture(autouse=True)
def _cache(clip_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNMAKE_CACHE", str(clip_cache))


@pytest.fixture(scope="session")
def tiny(clip_cache: Path) -> clip.Loaded:
    """The built-in model, loaded once for the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNMAKE_CACHE", str(clip_cache))
        return clip.load(ClipResolver(None, Path()).resolve("default"))


def images(n: int, size: int = 64) -> list[Image.Image]:
    """n different seeded noise images."""
    return [Image.fromarray(np.random.default_rng(i).integers(0, 256, (size, size, 3), np.uint8))
            for i in range(n)]


def checkpoint_of(tiny: clip.Loaded, dest: Path) -> Path:
    """A user checkpoint file: a copy of the built-in weights."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tiny.ref.path, dest)
    return dest


# -- resolving ---------------------------------------------------------------------------------

def test_default_is_the_builtin_when_nothing_is_declared(clip_cache: Path) -> None:
    for aliases in (None, {}, {"default": "tiny-clip"}):
        ref = ClipResolver(aliases, Path()).resolve("default")
        assert ref == tiny_clip_ref("default")
        assert ref.source == "builtin" and ref.arch == "unmake-tiny-clip"
        assert ref.fingerprint.startswith("tiny-clip:")
        assert Path(ref.path).parent.parent == clip_cache


def test_alias_of_an_alias(tmp_path: Path, tiny: clip.Loaded) -> None:
    checkpoint_of(tiny, tmp_path / "w.safetensors")
    aliases = {"default": "mine", "mine": {"arch": "unmake-tiny-clip",
                                           "checkpoint": "w.safetensors"}}
    resolver = ClipResolver(aliases, tmp_path)
    assert resolver.resolve("default").fingerprint == resolver.resolve("mine").fingerprint
    assert resolver.resolve("default").name == "default"


def test_unknown_alias_names_it_with_did_you_mean() -> None:
    resolver = ClipResolver({"vitb32": {"arch": "ViT-B-32", "checkpoint": "w.safetensors"}},
                            Path())
    with pytest.raises(ModelNotFound, match=r"'vitb23' is not declared; did you mean 'vitb32'"):
        resolver.resolve("vitb23")


def test_missing_file_names_the_config_key(tmp_path: Path) -> None:
    aliases = {"vitb32": {"arch": "ViT-B-32", "checkpoint": "weights/x.safetensors"}}
    with pytest.raises(ModelNotFound) as err:
        ClipResolver(aliases, tmp_path).resolve("vitb32")
    assert str(err.value) == (f"{KEY}.vitb32.checkpoint: file weights/x.safetensors not found "
                              "(relative to mkdocs.yml)")


@pytest.mark.parametrize(("aliases", "message"), [
    ([], f"{KEY}: must be a mapping"),
    ({"a": 3}, f"{KEY}.a: must be 'tiny-clip', another alias, or a mapping"),
    ({"a": {"arch": "ViT-B-32", "checkpiont": "w.safetensors"}},
     f"{KEY}.a.checkpiont: unknown key; did you mean 'checkpoint'?"),
    ({"a": {"arch": "ViT-B-32"}}, f"{KEY}.a: give either `checkpoint` (with `arch`) or `hf`, "
                                  "got neither"),
    ({"a": {"arch": "ViT-B-32", "checkpoint": "w.safetensors", "hf": "o/n"}},
     f"{KEY}.a: give either `checkpoint` (with `arch`) or `hf`, got both"),
    ({"a": {"checkpoint": "w.safetensors"}}, f"{KEY}.a.arch: missing"),
    ({"a": {"arch": "ViT-B32", "checkpoint": "w.safetensors"}},
     f"{KEY}.a.arch: 'ViT-B32' is not an open_clip architecture; did you mean 'ViT-B-32'"),
    ({"a": {"arch": "ViT-B-32", "checkpoint": ""}}, f"{KEY}.a.checkpoint: must be text"),
    ({"a": {"arch": "ViT-B-32", "checkpoint": "w.safetensors", "allow_pickle": "yes"}},
     f"{KEY}.a.allow_pickle: must be true or false"),
    ({"a": {"hf": "o/n", "arch": "ViT-B-32"}}, f"{KEY}.a.arch: not used with `hf`"),
    ({"a": {"hf": "just-a-name"}}, f"{KEY}.a.hf: must be a Hugging Face repo id"),
    ({"default": "vitb23", "vitb32": "tiny-clip"},
     "'vitb23' (named by plugins.unmake.clip_models.default) is not declared; "
     "did you mean 'vitb32'?"),
    ({"tiny-clip": {"hf": "o/n"}}, f"{KEY}.tiny-clip: 'tiny-clip' is a built-in model"),
])
def test_malformed_config_is_refused_naming_the_key(aliases: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ClipResolver(aliases, Path())
    assert message in str(err.value)


def test_aliases_in_a_circle_are_refused() -> None:
    resolver = ClipResolver({"a": "b", "b": "a"}, Path())
    with pytest.raises(ConfigError, match="circle: a -> b -> a"):
        resolver.resolve("a")


def test_fingerprint_changes_when_the_checkpoint_changes(tmp_path: Path,
                                                         tiny: clip.Loaded) -> None:
    from safetensors.torch import load_file, save_file

    path = checkpoint_of(tiny, tmp_path / "w.safetensors")
    aliases = {"mine": {"arch": "unmake-tiny-clip", "checkpoint": "w.safetensors"}}
    memo: dict[str, Any] = {}
    before = ClipResolver(aliases, tmp_path, memo=memo).resolve("mine")
    assert before.source == "file" and before.fingerprint.startswith("file:unmake-tiny-clip:")
    st = path.stat()
    assert f"{path}|{st.st_size}|{st.st_mtime_ns}" in memo  # the hash is memoised
    assert memo["clip:mine"]["fingerprint"] == before.fingerprint  # remembered for frozen
    assert ClipResolver(aliases, tmp_path, memo=memo).resolve("mine") == before

    state = load_file(path)
    state["logit_scale"] = state["logit_scale"] + 1
    save_file(state, path)
    after = ClipResolver(aliases, tmp_path, memo=memo).resolve("mine")
    assert after.fingerprint != before.fingerprint


def test_frozen_build_falls_back_to_the_remembered_entry(tmp_path: Path,
                                                         tiny: clip.Loaded) -> None:
    path = checkpoint_of(tiny, tmp_path / "w.safetensors")
    aliases = {"mine": {"arch": "unmake-tiny-clip", "checkpoint": "w.safetensors"}}
    memo: dict[str, Any] = {}
    made = ClipResolver(aliases, tmp_path, memo=memo).resolve("mine")
    memo = json.loads(json.dumps(memo))  # as the caller persists it
    path.unlink()

    assert ClipResolver(aliases, tmp_path, frozen=True, memo=memo).resolve("mine") == made
    with pytest.raises(ModelNotFound):
        ClipResolver(aliases, tmp_path, memo=memo).resolve("mine")
    # an entry the author has changed since is not the one remembered
    changed = {"mine": {**aliases["mine"], "checkpoint": "v.safetensors"}}
    with pytest.raises(ModelNotFound):
        ClipResolver(changed, tmp_path, frozen=True, memo=memo).resolve("mine")


def test_importing_clipmodels_does_not_import_torch() -> None:
    code = ("import sys, generator.clipmodels as m\n"
            "m.ClipResolver({'a': {'arch': 'ViT-B-32', 'checkpoint': 'w.safetensors'}}, "
            "m.Path()).resolve('default')\n"
            "print(sorted({'torch', 'open_clip'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- the backend -------------------------------------------------------------------------------

def test_embeddings_have_the_model_width_and_unit_norm(tiny: clip.Loaded) -> None:
    assert tiny.embed_dim == TINY_CLIP["model_cfg"]["embed_dim"] == 64
    emb = clip.embed_images(tiny, images(5, size=80), batch_size=2)
    text = clip.embed_texts(tiny, ["a fox", "a red fox in the snow", ""])
    for arr, n in ((emb, 5), (text, 3)):
        assert arr.shape == (n, 64) and arr.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1, atol=1e-5)
    assert clip.embed_images(tiny, [], batch_size=4).shape == (0, 64)
    assert clip.embed_texts(tiny, []).shape == (0, 64)


def test_embeddings_are_deterministic_and_batch_independent(tiny: clip.Loaded) -> None:
    ims = images(4)
    np.testing.assert_array_equal(clip.embed_images(tiny, ims[:1], 1),
                                  clip.embed_images(tiny, ims[:1], 1))
    one_by_one = clip.embed_images(tiny, ims, batch_size=1)
    together = clip.embed_images(tiny, ims, batch_size=4)
    np.testing.assert_allclose(one_by_one, together, atol=1e-5)
    assert not np.allclose(together[0], together[1])  # different images, different vectors


def test_zero_shot_rows_are_probabilities(tiny: clip.Loaded) -> None:
    emb = clip.embed_images(tiny, images(3), batch_size=3)
    probs = clip.zero_shot(tiny, emb, ["cat", "dog", "fox", "{odd} label"], "a photo of a {}")
    assert probs.shape == (3, 4) and probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    with pytest.raises(ValueError, match="template must hold"):
        clip.zero_shot(tiny, emb, ["cat"], "a photo of a cat")


def test_environment_names_the_libraries(tiny: clip.Loaded) -> None:
    env = clip.environment(tiny)
    assert set(env) >= {"open_clip", "torch", "device"} and env["device"] == "cpu"


def test_a_checkpoint_file_loads_like_the_builtin(tmp_path: Path, tiny: clip.Loaded) -> None:
    checkpoint_of(tiny, tmp_path / "weights" / "mine.safetensors")
    ref = ClipResolver({"mine": {"arch": "unmake-tiny-clip",
                                 "checkpoint": "weights/mine.safetensors"}},
                       tmp_path).resolve("mine")
    ims = images(2)
    np.testing.assert_array_equal(clip.embed_images(clip.load(ref), ims, 2),
                                  clip.embed_images(tiny, ims, 2))


def test_pickle_checkpoint_is_refused_unless_allowed(tmp_path: Path, tiny: clip.Loaded) -> None:
    import torch

    torch.save(tiny.model.state_dict(), tmp_path / "old.pt")
    entry = {"arch": "unmake-tiny-clip", "checkpoint": "old.pt"}
    with pytest.raises(ConfigError) as err:
        ClipResolver({"old": entry}, tmp_path)
    assert f"{KEY}.old.checkpoint: old.pt is not a .safetensors file" in str(err.value)
    assert "can run arbitrary code" in str(err.value) and "allow_pickle" in str(err.value)

    ref = ClipResolver({"old": {**entry, "allow_pickle": True}}, tmp_path).resolve("old")
    assert ref.allow_pickle
    ims = images(2)
    np.testing.assert_allclose(clip.embed_images(clip.load(ref), ims, 2),
                               clip.embed_images(tiny, ims, 2), atol=1e-6)
    # the backend checks again: a ref made elsewhere (a job's run dict) gets no way round it
    with pytest.raises(ConfigError, match=r"not a \.safetensors file"):
        clip.load(ClipRef(**{**ref.as_dict(), "allow_pickle": False}))


def hf_snapshot(hub: Path, repo: str, commit: str, weights: Path, name: str) -> Path:
    """A Hugging Face cache entry as `hf download` leaves it: refs, blobs, symlinked snapshot."""
    entry = hub / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    snapshot = entry / "snapshots" / commit
    snapshot.mkdir(parents=True)
    blobs = entry / "blobs"
    blobs.mkdir()
    config = {"model_cfg": TINY_CLIP["model_cfg"],
              "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                 "std": [0.26862954, 0.26130258, 0.27577711]}}
    files = {"open_clip_config.json": json.dumps(config).encode(), name: weights.read_bytes()}
    for i, (file, data) in enumerate(files.items()):
        (blobs / f"blob{i}").write_bytes(data)
        (snapshot / file).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    return snapshot


def test_hf_cache_entry_resolves_to_its_commit_and_loads_offline(
        tmp_path: Path, tiny: clip.Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    hf_snapshot(hub, "org/name", commit, Path(tiny.ref.path), "open_clip_model.safetensors")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

    resolver = ClipResolver({"laion": {"hf": "org/name"}}, tmp_path)
    ref = resolver.resolve("laion")
    assert (ref.source, ref.fingerprint) == ("hf-cache", f"hf:org/name@{commit}")
    for pinned in (f"org/name@{commit}", "org/name@main"):  # a commit, or a branch name
        by_rev = ClipResolver({"p": {"hf": pinned}}, tmp_path).resolve("p")
        assert by_rev.fingerprint == ref.fingerprint
    loaded = clip.load(ref)
    assert loaded.embed_dim == 64
    ims = images(2)
    np.testing.assert_array_equal(clip.embed_images(loaded, ims, 2),
                                  clip.embed_images(tiny, ims, 2))

    with pytest.raises(ModelNotFound, match=r"plugins.unmake.clip_models.gone.hf: org/gone is "
                                            "not in the Hugging Face cache"):
        ClipResolver({"gone": {"hf": "org/gone"}}, tmp_path).resolve("gone")


def test_hf_cache_entry_with_only_pickle_weights_is_refused(
        tmp_path: Path, tiny: clip.Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    torch.save(tiny.model.state_dict(), tmp_path / "w.bin")
    hf_snapshot(tmp_path / "hub", "org/old", "c0ffee", tmp_path / "w.bin",
                "open_clip_pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"old.hf: the snapshot of org/old has only pickle"):
        ClipResolver({"old": {"hf": "org/old"}}, tmp_path).resolve("old")
    ref = ClipResolver({"old": {"hf": "org/old", "allow_pickle": True}}, tmp_path).resolve("old")
    assert clip.load(ref).embed_dim == 64
