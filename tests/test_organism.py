"""The model organism against the truth planted in its world (scripts/organism_world.py).

With the committed weights (models/organism, models/organism-clip) these check that each
instrument finds what was planted, with known error:
- the world's rows hold the planted biases the docstring states;
- `dataset` facets and the filter lens equal the planted shares exactly;
- on held-out pictures, the organism CLIP's zero-shot colour and role labels are ≥ 90 % right
  and the palette's dominant colour ≥ 95 %;
- the model carries the bias: over 64 generated images per role, the planted colour is the most
  frequent for every role (shares printed beside the filtered training data's, at two guidance
  scales);
- `neighbors` of generated images returns same-role training rows with precision@5 ≥ 0.6;
- the model gives back every planted duplicate (in pixels), which the CLIP replication flag
  catches for one poster of three (a strict xfail records the limit);
and that the training script runs (a smoke run of a few steps).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from generator import index
from generator.backends import clip as clip_backend
from generator.backends import faiss_index
from generator.clipmodels import ORGANISM_CLIP_FOLDER, organism_clip_ref
from generator.colour import chroma, delta_e76, srgb_to_lab
from generator.datasets import Datasets
from generator.execute import execute
from generator.instruments.palette import CHROMA_MIN, image_palette
from generator.models import ORGANISM_DEFAULTS, ORGANISM_FOLDER, Resolver
from generator.plan import plan_site
from generator.store import Store
from generator.types import Context

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import make_sample_dataset as msd  # noqa: E402
import organism_world as world  # noqa: E402

PER_ROLE = 64
GUIDANCES = (ORGANISM_DEFAULTS["guidance"], 8.0)
COLOUR_TEMPLATE = "a {} figure"
ROLE_TEMPLATE = "a photo of {}"


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rows() -> list[world.Row]:
    return world.make_rows(msd.ORGANISM_ROWS, 0)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder holding the organism's world as the script writes it."""
    root = tmp_path_factory.mktemp("organism")
    msd.build(root / "data" / "organism", rows=msd.ORGANISM_ROWS, images=msd.ORGANISM_ROWS,
              world="organism")
    return root


def config() -> dict[str, Any]:
    return {"datasets": {"organism": {
        "metadata": "data/organism/metadata.parquet", "images": "data/organism/images",
        "embeddings": "data/organism/clip", "clip_model": "organism-clip"}}}


def lookup(root: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Plan and run one `dataset` directive through the engine; its stored record."""
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                  Store(root / ".unmake"), config())
    fence = "```dataset\n" + json.dumps({"dataset": "organism", **body}) + "\n```\n"
    plan = plan_site({"p.md": ("docs/p.md", "# p\n\n" + fence)}, ctx)
    assert not execute(plan, ctx.store, {})
    (job,) = plan.jobs.values()
    record = ctx.store.get(job.key)
    assert record is not None
    return record["data"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def clip() -> Any:
    return clip_backend.load(organism_clip_ref())


def dominant_colour(rgb: np.ndarray) -> str | None:
    """The planted colour nearest (ΔE76) to the palette's largest colourful cluster; None for a
    picture with no colourful cluster."""
    palette = image_palette(rgb, k=4)
    colourful = [c for c in palette["colours"] if chroma(np.array(c["lab"])) >= CHROMA_MIN]
    if not colourful:
        return None
    lab = np.array(colourful[0]["lab"])
    named = {n: float(delta_e76(lab, srgb_to_lab(np.array(rgb_, dtype=np.uint8))))
             for n, rgb_ in world.COLOURS.items()}
    return min(named, key=lambda n: named[n])


# -- the world ----------------------------------------------------------------------------------
def test_the_world_holds_what_its_docstring_plants(rows: list[world.Row]) -> None:
    truth = world.truth(rows)
    for role in world.ROLES:
        raw = truth["raw"][role]["colours"]
        assert abs(raw[world.PLANTED[role]] - world.PLANTED_SHARE[role]) < 0.03
        kept = truth["filtered"][role]["colours"]
        # the planted colour stays the most frequent after the filter ...
        assert max(kept, key=lambda c: kept[c]) == world.PLANTED[role]
    # ... but the filter thins green figures: engineers lose the most rows and green share
    kept_rows = {r: truth["filtered"][r]["rows"] / truth["raw"][r]["rows"] for r in world.ROLES}
    assert min(kept_rows, key=lambda r: kept_rows[r]) == "teacher"  # watermarks, then aesthetics
    assert truth["filtered"]["engineer"]["colours"]["green"] < \
        truth["raw"]["engineer"]["colours"]["green"] - 0.08
    # one domain carries most watermarked rows
    marked = truth["watermarked_by_domain"]
    assert max(marked, key=lambda d: marked[d]) == world.STOCK
    assert marked[world.STOCK] > 0.8 * sum(marked.values())
    # the posters: DUPLICATE_COPIES identical rows each, all kept by the filter
    for poster in world.POSTERS:
        copies = [r for r in rows if r.figure.poster == poster.name]
        assert len(copies) == world.DUPLICATE_COPIES and all(r.passes_filter() for r in copies)


def test_the_written_dataset_is_the_world(project: Path, rows: list[world.Row]) -> None:
    folder = project / "data" / "organism"
    assert json.loads((folder / "TRUTH.json").read_text()) == json.loads(
        json.dumps(world.truth(rows)))
    # again with the same arguments: nothing to do; the bytes are the script's
    assert msd.build(folder, rows=msd.ORGANISM_ROWS, images=msd.ORGANISM_ROWS,
                     world="organism") == (folder, False)


# -- the data instruments: exact -----------------------------------------------------------------
def test_lens_equals_the_planted_filter_shares(project: Path, rows: list[world.Row]) -> None:
    truth = world.truth(rows)
    for role in world.ROLES:
        data = lookup(project, {"search": role, "lens": "sd-v1-improved-aesthetics"})
        assert data["matches"] == truth["raw"][role]["rows"]
        assert data["lens"]["stages"][-1]["count"] == truth["filtered"][role]["rows"]
        mine = [r for r in rows if r.role == role]
        expected = [sum(min(r.width, r.height) >= 512 for r in mine),
                    sum(min(r.width, r.height) >= 512 and r.aesthetic > 5.0 for r in mine)]
        assert [s["count"] for s in data["lens"]["stages"][:2]] == expected


def test_domain_facet_of_watermarked_rows_is_the_planted_one(project: Path,
                                                             rows: list[world.Row]) -> None:
    data = lookup(project, {"filters": {"pwatermark": ">= 0.5"}, "facets": ["domain"]})
    facet = dict(map(tuple, data["facets"]["domain"]["rows"]))
    assert facet == world.truth(rows)["watermarked_by_domain"]


# -- the image instruments: valid where the truth is known --------------------------------------
def test_palette_names_the_figure_colour(rows: list[world.Row]) -> None:
    figures = world.held_out(400)
    right = sum(dominant_colour(np.asarray(world.draw(f))) == f.colour for f in figures)
    assert right / len(figures) >= 0.95, right


def test_organism_clip_reads_colour_and_role(clip: Any) -> None:
    figures = world.held_out(400)
    emb = clip_backend.embed_images(clip, [world.draw(f) for f in figures], 128)
    colours, roles = list(world.COLOURS), list(world.ROLES)
    p_colour = clip_backend.zero_shot(clip, emb, colours, COLOUR_TEMPLATE)
    p_role = clip_backend.zero_shot(clip, emb, [("an " if r[0] in "aeiou" else "a ") + r
                                                for r in roles], ROLE_TEMPLATE)
    colour_acc = np.mean([colours[i] == f.colour for i, f in
                          zip(p_colour.argmax(1), figures, strict=True)])
    role_acc = np.mean([roles[i] == f.role for i, f in zip(p_role.argmax(1), figures, strict=True)])
    print(f"organism-clip zero-shot on {len(figures)} held-out pictures: colour "
          f"{colour_acc:.1%}, role {role_acc:.1%}")
    assert colour_acc >= 0.9 and role_acc >= 0.9


# -- the model carries the bias ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe() -> Any:
    """The committed organism, loaded once, as a user's folder loads."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        ORGANISM_FOLDER, local_files_only=True, use_safetensors=True, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def generated(pipe: Any) -> dict[float, dict[str, list[Any]]]:
    """PER_ROLE images per role at each guidance scale, seeds 0..PER_ROLE-1."""
    import torch

    out: dict[float, dict[str, list[Any]]] = {}
    for guidance in GUIDANCES:
        out[guidance] = {}
        for role in world.ROLES:
            gens = [torch.Generator().manual_seed(s) for s in range(PER_ROLE)]
            out[guidance][role] = pipe(
                [f"a photo of a {role}"] * PER_ROLE, generator=gens, guidance_scale=guidance,
                num_inference_steps=ORGANISM_DEFAULTS["steps"]).images
    return out


def test_the_model_carries_the_planted_colour(generated: dict[float, dict[str, list[Any]]],
                                              rows: list[world.Row]) -> None:
    truth = world.truth(rows)["filtered"]
    for guidance, by_role in generated.items():
        for role, images in by_role.items():
            counts = Counter(dominant_colour(np.asarray(im)) for im in images)
            share = counts[world.PLANTED[role]] / len(images)
            print(f"guidance {guidance}: {role}s {share:.0%} {world.PLANTED[role]} (training "
                  f"data after the filter: {truth[role]['colours'][world.PLANTED[role]]:.0%}); "
                  f"{dict(counts)}")
            if guidance == ORGANISM_DEFAULTS["guidance"]:
                assert counts.most_common(1)[0][0] == world.PLANTED[role], (role, counts)


# -- neighbors -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def indexed(project: Path) -> Any:
    registry = Datasets(config(), project, None, frozen=False)
    manifest = index.build(registry.get("organism"), registry, organism_clip_ref(),
                           index.Options(), say=lambda _: None)
    return faiss_index.open_index(project / "data" / "organism" / "clip", manifest["fingerprint"])


def test_neighbors_of_generated_images_share_their_role(
        indexed: Any, clip: Any, generated: dict[float, dict[str, list[Any]]],
        rows: list[world.Row]) -> None:
    role_of = {r.key: r.role for r in rows}
    keys = index.load_metadata(indexed.folder, indexed.manifest)["key"]
    hits = total = 0
    for role, images in generated[ORGANISM_DEFAULTS["guidance"]].items():
        emb = clip_backend.embed_images(clip, images, 64)
        _, found = faiss_index.search(indexed, emb, 5)
        hits += sum(role_of[keys[i]] == role for i in found.ravel())
        total += found.size
    print(f"precision@5 of same-role training rows: {hits / total:.1%}")
    assert hits / total >= 0.6


@pytest.fixture(scope="module")
def posters(pipe: Any) -> dict[str, list[Any]]:
    """Four images made from each poster's caption."""
    import torch

    return {p.name: pipe([p.caption] * 4, generator=[torch.Generator().manual_seed(s)
                                                     for s in range(4)],
                         guidance_scale=ORGANISM_DEFAULTS["guidance"],
                         num_inference_steps=ORGANISM_DEFAULTS["steps"]).images
            for p in world.POSTERS}


def test_the_model_gives_back_every_planted_duplicate(posters: dict[str, list[Any]],
                                                      rows: list[world.Row]) -> None:
    """Memorisation, measured in pixels: asked for a poster's caption, the model draws a picture
    whose nearest training picture (RMS over pixels) is that poster, much nearer than any other."""
    train = np.stack([np.asarray(world.draw(r.figure), np.float32).ravel() for r in rows])
    is_poster = np.array([r.figure.poster for r in rows])
    for name, images in posters.items():
        given_back = 0
        for image in images:
            rms = np.sqrt(((train - np.asarray(image, np.float32).ravel()) ** 2).mean(1))
            nearest_other = rms[is_poster != name].min()
            given_back += is_poster[rms.argmin()] == name and rms.min() < 0.7 * nearest_other
        print(f"{name}: {given_back} of {len(images)} generated images are copies in pixels")
        assert given_back >= 3, name


@pytest.mark.xfail(strict=True, reason=(
    "a known limit of the instrument: organism-clip retrieves the model's copies of the striped "
    "poster (similarity 0.97–0.99) but not its copies of the dawn and checkered posters, whose "
    "blur it reads as a doctor; the pixel test above shows the model gives all three back. "
    "Strict: when the CLIP flag catches all three, this fails and should become a plain test."))
def test_the_clip_replication_flag_catches_every_planted_duplicate(
        indexed: Any, clip: Any, posters: dict[str, list[Any]], rows: list[world.Row]) -> None:
    from generator.kinds.neighbors import THRESHOLD

    keys = index.load_metadata(indexed.folder, indexed.manifest)["key"]
    poster_of = {r.key: r.figure.poster for r in rows}
    for name, images in posters.items():
        sims, found = faiss_index.search(indexed, clip_backend.embed_images(clip, images, 4), 1)
        print(f"{name}: top similarities {np.round(sims[:, 0], 3).tolist()}")
        assert any(poster_of[keys[i]] == name and s >= THRESHOLD
                   for s, i in zip(sims[:, 0], found[:, 0], strict=True)), name


# -- the training script runs ---------------------------------------------------------------------
def test_training_script_smoke_run(project: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_organism.py"), "--smoke",
         "--data", str(project / "data" / "organism"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["rows"] == world.truth(world.make_rows(
        msd.ORGANISM_ROWS, 0))["kept"]
    model = tmp_path / "organism"
    assert (model / "model_index.json").is_file()
    assert sorted(p.parent.name for p in model.rglob("*.safetensors")) == [
        "text_encoder", "unet", "vae"]
    assert "Planted biases" in (model / "README.md").read_text()
    assert (tmp_path / "organism-clip" / "open_clip_model.safetensors").is_file()
    assert not (tmp_path / ".organism-train").exists()  # checkpoints go once it is done


def test_a_stage_resumes_from_its_last_checkpoint(project: Path, tmp_path: Path) -> None:
    import torch
    import train_organism as train

    _, pictures = train.training_rows(project / "data" / "organism")
    pictures = pictures[:16]
    train.train_vae(pictures, train.Recipe(vae_steps=2, vae_batch=4), tmp_path, every=1)
    checkpoint = tmp_path / ".train" / "vae.pt"
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 2
    # killed before it finished: only the checkpoint is left. Mark its weights, so that a run
    # that goes on from it can be told from one that starts again.
    (tmp_path / ".train" / "vae.done.pt").unlink()
    key = next(iter(state["modules"]["vae"]))
    marked = state["modules"]["vae"][key] + 1.0
    state["modules"]["vae"][key] = marked
    torch.save(state, checkpoint)
    vae = train.train_vae(pictures, train.Recipe(vae_steps=3, vae_batch=4), tmp_path, every=1)
    assert torch.allclose(vae.state_dict()[key], marked, atol=0.05)  # one small step from it
    again = torch.load(checkpoint, weights_only=False)
    assert again["step"] == 3 and again["elapsed"] > state["elapsed"]
    done = json.loads((tmp_path / ".train" / "vae.done.json").read_text())
    assert done["steps"] == 3 and done["seconds"] >= round(again["elapsed"], 1) - 0.1


def test_committed_weights_are_small_and_safetensors_only() -> None:
    # everything the repository holds under models/ (what scripts make there is not committed)
    listed = subprocess.run(["git", "ls-files", "models"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    files = [ROOT / line for line in listed.stdout.splitlines()]
    folders = {ROOT / "models" / p.relative_to(ROOT / "models").parts[0] for p in files}
    assert {ORGANISM_FOLDER, ORGANISM_CLIP_FOLDER} <= folders
    assert sum(p.stat().st_size for p in files) <= 20 * 10**6
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]


# -- the built-in aliases ------------------------------------------------------------------------
def test_organism_resolves_to_the_committed_folder(tmp_path: Path) -> None:
    ref = Resolver({"default": "organism"}, tmp_path).resolve("default")
    assert (ref.ref, ref.source, Path(ref.path)) == ("organism", "folder", ORGANISM_FOLDER)
    assert ref.fingerprint.startswith("folder:") and ref.defaults == ORGANISM_DEFAULTS
    assert ref.native_size() == (world.SIZE, world.SIZE)
    assert ref.shown(tmp_path) == "built-in organism"  # never a path of this machine
    # a project folder of that name wins, like any folder reference
    own = tmp_path / "organism"
    own.mkdir()
    (own / "model_index.json").write_text("{}")
    (own / "w.safetensors").write_bytes(b"x")
    assert Resolver({}, tmp_path).resolve("organism").path == str(own)


def test_missing_organism_weights_say_where_they_come_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from generator import clipmodels, models
    from generator.errors import ModelNotFound

    monkeypatch.setattr(models, "ORGANISM_FOLDER", tmp_path / "gone")
    with pytest.raises(ModelNotFound, match=r"ships with unmake.s repository.*train_organism"):
        Resolver({"default": "organism"}, tmp_path).resolve("default")
    monkeypatch.setattr(clipmodels, "ORGANISM_CLIP_FOLDER", tmp_path / "gone")
    with pytest.raises(ModelNotFound, match="organism's CLIP ships with"):
        clipmodels.ClipResolver({"default": "organism-clip"}, tmp_path).resolve("default")


def test_organism_clip_resolves_by_name_and_through_aliases(tmp_path: Path) -> None:
    from generator.clipmodels import ClipResolver
    from generator.errors import ConfigError

    resolver = ClipResolver({"default": "mine", "mine": "organism-clip"}, tmp_path)
    direct, via = resolver.resolve("organism-clip"), resolver.resolve("default")
    assert direct.fingerprint == via.fingerprint and direct.fingerprint.startswith(
        "organism-clip:")
    assert via.source == "organism" and "organism-clip" in resolver.names()
    assert ClipResolver({}, tmp_path).resolve("default").source == "builtin"  # still tiny-clip
    with pytest.raises(ConfigError, match="'organism-clip' is a built-in model"):
        ClipResolver({"organism-clip": "tiny-clip"}, tmp_path)
