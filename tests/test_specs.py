"""`generate` specs and plans: what authors may write, what it expands to, how it is keyed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from generator.errors import DirectiveError, ModelNotFound
from generator.models import ModelRef, Resolver
from generator.plan import parse_page, plan_site
from generator.render import common_affixes
from generator.store import Memo, Store
from generator.types import Context


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    store = Store(tmp_path / ".unmake")
    return Context(tmp_path, tmp_path / "docs", Resolver({"default": "tiny", "alt": "tiny"},
                                                         tmp_path), store)


def page(body: str) -> str:
    return f"# Title\n\nSome text.\n\n```generate\n{body}\n```\n"


def spec_of(body: str, ctx: Context):
    (directive,) = parse_page(page(body), "docs/p.md", ctx)
    return directive.spec


def test_variants_expand_combinatorially_in_order(ctx: Context) -> None:
    spec = spec_of('prompt: "a {red|blue} {car|house}"', ctx)
    assert spec.prompts == ("a red car", "a red house", "a blue car", "a blue house")


def test_prompt_list_and_variants_combine_without_duplicates(ctx: Context) -> None:
    spec = spec_of('prompt: ["a {cat|dog}", "a cat", "a bird"]', ctx)
    assert spec.prompts == ("a cat", "a dog", "a bird")


@pytest.mark.parametrize(
    ("seeds", "expected"),
    [("3", (0, 1, 2)), ("[7, 42]", (7, 42)), ("'100-103'", (100, 101, 102, 103))],
)
def test_seeds_as_count_list_or_range(ctx: Context, seeds: str, expected: tuple) -> None:
    assert spec_of(f"prompt: a\nseeds: {seeds}", ctx).seeds == expected


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("prompt: a\nsteps: -3", 7, "'steps' must be 1–150, got -3"),
        ("prompt: a\nsteps: 2.5", 7, "'steps' must be a whole number"),
        ("prompt: a\nguidance: high", 7, "'guidance' must be a number"),
        ("prompt: a\nsetps: 3", 7, "'setps' is not a known key"),
        ("prompt: a\nseeds: 0", 7, "'seeds' must be 1–4096"),
        ("prompt: a\nseeds: '9-3'", 7, "'seeds' range must go up"),
        ("prompt: a\nseeds: [1, 1]", 7, "lists a seed twice"),
        ("prompt: a\nwidth: 100", 7, "multiple of 8"),
        ("prompt: a\nsize: 64\nwidth: 64", 7, "either size or width/height"),
        ("prompt: a\nscheduler: magic", 7, "'scheduler' must be one of"),
        ("prompt: a\nmodel: nowhere", 7, "'model' 'nowhere' not found; looked in: folder"),
        ("prompt: 'a {b'", 6, "'prompt' is not a valid prompt template"),
        ("seeds: 2", 5, "'prompt' is required"),
        ("prompt: a\nsweep:\n  guidance: [1]", 8, "'sweep.guidance' must list at least two"),
        ("prompt: a\nsweep:\n  colour: [1, 2]", 8, "'sweep.colour' cannot be swept"),
        ("prompt: a\nsweep:\n  steps: [1, 999]", 8, "'sweep.steps' must be 1–150, got 999"),
        ("prompt: a\nsteps: 3\nsweep:\n  steps: [1, 2]", 9, "is both set and swept"),
        ("prompt: a\nseeds: 2\ngrid:\n  rows: guidance", 9, "'grid.rows' must name a parameter"),
        ("prompt: a\nseeds: 2\ngrid:\n  cols: seed\n  colz: x", 10, "'grid.colz' is not a known"),
        ("prompt: a\nseeds: 4096\nsweep:\n  steps: [1, 2]", 5, "asks for 8192 images"),
    ],
)
def test_errors_name_file_line_kind_and_key(ctx: Context, body: str, line: int,
                                            fragment: str) -> None:
    with pytest.raises(DirectiveError) as err:
        spec_of(body, ctx)
    message = str(err.value)
    assert message.startswith(f"docs/p.md:{line}: generate: "), message
    assert fragment in message
    assert "\n" not in message


def test_unknown_key_suggests_the_nearest_known_one(ctx: Context) -> None:
    with pytest.raises(DirectiveError, match="did you mean 'steps'"):
        spec_of("prompt: a\nsetps: 3", ctx)


def test_axes_are_the_parameters_that_vary(ctx: Context) -> None:
    spec = spec_of("prompt: 'a {b|c}'\nseeds: 1\nsweep:\n  guidance: [1, 5]\n  steps: [2, 3]", ctx)
    assert [name for name, _ in spec.axes()] == ["prompt", "guidance", "steps"]


def plan_of(pages: dict[str, str], ctx: Context):
    return plan_site({name: (f"docs/{name}", text) for name, text in pages.items()}, ctx)


def test_plan_expands_to_one_job_per_image_with_model_defaults(ctx: Context) -> None:
    plan = plan_of({"p.md": page("prompt: 'a {b|c}'\nseeds: 3\nsweep:\n  guidance: [1, 5]")}, ctx)
    assert len(plan.jobs) == 12 and len(plan.missing) == 12 and not plan.cached
    job = next(iter(plan.jobs.values()))
    assert job.inputs["steps"] == 4 and (job.inputs["width"], job.inputs["height"]) == (64, 64)
    assert job.inputs["model"].startswith("tiny:")
    assert "path" not in job.inputs  # where the model lives is not what it is
    assert plan.summary() == "12 jobs: 0 cached, 12 to run"


def test_identical_jobs_on_two_pages_are_one_job(ctx: Context) -> None:
    plan = plan_of({"a.md": page("prompt: a cat\nseeds: 2"),
                    "b.md": page("prompt: a cat\nseeds: [1, 5]")}, ctx)
    assert len(plan.jobs) == 3
    shared = [j for j in plan.jobs.values() if j.inputs["seed"] == 1]
    assert shared[0].origins == ["docs/a.md:5", "docs/b.md:5"]


def test_aliases_of_the_same_model_share_keys(ctx: Context) -> None:
    plan = plan_of({"a.md": page("prompt: a cat\nmodel: alt"), "b.md": page("prompt: a cat")}, ctx)
    assert len(plan.jobs) == 1


def test_changing_one_variant_changes_only_its_keys(ctx: Context) -> None:
    before = set(plan_of({"p.md": page("prompt: 'a {b|c|d}'\nseeds: 2")}, ctx).jobs)
    after = set(plan_of({"p.md": page("prompt: 'a {b|x|d}'\nseeds: 2")}, ctx).jobs)
    assert len(before & after) == 4 and len(after - before) == 2


def test_size_sweep_keys_width_and_height(ctx: Context) -> None:
    plan = plan_of({"p.md": page("prompt: a\nsweep:\n  size: [64, [64, 128]]")}, ctx)
    sizes = sorted((j.inputs["width"], j.inputs["height"]) for j in plan.jobs.values())
    assert sizes == [(64, 64), (64, 128)]


def test_labels_strip_the_shared_words() -> None:
    assert common_affixes(["a photo of a doctor, studio", "a photo of a nurse, studio"]) == {
        "a photo of a doctor, studio": "doctor", "a photo of a nurse, studio": "nurse"}
    assert common_affixes(["same"]) == {"same": "same"}
    assert common_affixes(["a b", "a b c"]) == {"a b": "a b", "a b c": "c"}


def test_prompt_expansions_are_remembered_in_the_store(ctx: Context, tmp_path: Path) -> None:
    plan_of({"p.md": page("prompt: 'a {b|c}'")}, ctx)
    saved = json.loads((tmp_path / ".unmake" / "memo" / "prompts.json").read_text())
    assert saved["entries"] == {"a {b|c}": ["a b", "a c"]}
    assert saved["version"].startswith("dynamicprompts ")
    # a later build reads the memo instead of parsing again: a doctored entry shows it is used
    saved["entries"]["a {b|c}"] = ["a b", "a z"]
    (tmp_path / ".unmake" / "memo" / "prompts.json").write_text(json.dumps(saved))
    fresh = Context(tmp_path, tmp_path / "docs", ctx.resolver, Store(tmp_path / ".unmake"))
    assert spec_of("prompt: 'a {b|c}'", fresh).prompts == ("a b", "a z")
    # a memo written by another dynamicprompts release is ignored
    saved["version"] = "dynamicprompts 0.0"
    (tmp_path / ".unmake" / "memo" / "prompts.json").write_text(json.dumps(saved))
    fresh = Context(tmp_path, tmp_path / "docs", ctx.resolver, Store(tmp_path / ".unmake"))
    assert spec_of("prompt: 'a {b|c}'", fresh).prompts == ("a b", "a c")


def test_a_corrupt_memo_is_ignored(ctx: Context, tmp_path: Path) -> None:
    (tmp_path / ".unmake" / "memo").mkdir(parents=True)
    (tmp_path / ".unmake" / "memo" / "prompts.json").write_text("{half")
    assert spec_of("prompt: 'a {b|c}'", ctx).prompts == ("a b", "a c")


def test_two_figures_of_a_page_cannot_share_an_id(ctx: Context) -> None:
    text = page("id: foxes\nprompt: a") + "\n" + page("prompt: b\nid: foxes")
    with pytest.raises(DirectiveError) as err:
        plan_site({"p.md": ("docs/p.md", text)}, ctx)
    assert str(err.value) == ("docs/p.md:16: generate: 'id' 'foxes' is already the id of the "
                              "figure at docs/p.md:5; ids are unique across the site")


def test_frozen_builds_remember_a_missing_folder_models_print_and_size(tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    (folder / "unet").mkdir(parents=True)
    (folder / "vae").mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "unet" / "config.json").write_text('{"sample_size": 96}')
    (folder / "vae" / "config.json").write_text('{"block_out_channels": [1, 2, 3, 4]}')
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    (folder / "README.md").write_text("---\nlicense: mit\n---\n")
    def memo() -> Memo:  # each build opens the store anew and saves its memos when planned
        return Store(tmp_path / ".unmake").memo("fingerprints")

    def resolve(frozen: bool = False) -> ModelRef:
        m = memo()
        try:
            return Resolver({"default": "sd"}, tmp_path, m, frozen=frozen).resolve("default")
        finally:
            m.save()

    live = resolve()
    assert live.card is not None
    assert live.native_size() == (768, 768)
    assert live.fingerprint.startswith("folder:")
    (folder / "unet" / "config.json").write_text('{"sample_size": 64}')  # configs are hashed
    changed = resolve()
    assert changed.fingerprint != live.fingerprint
    (folder / "unet" / "config.json").write_text('{"sample_size": 96}')
    resolve()
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    frozen = resolve(frozen=True)
    assert (frozen.fingerprint, frozen.native_size()) == (live.fingerprint, (768, 768))
    assert frozen.card == live.card  # so a frozen fact sheet finds its stored key
    with pytest.raises(ModelNotFound, match="alias 'default' -> 'sd' not found"):
        resolve()


def test_heading_anchors_are_those_the_toc_extension_makes() -> None:
    from generator.plan import heading_anchors

    text = ("# Fox grid\n\nTitle two\n=========\n\nProse\n\n## Other {#custom}\n\n```\n# not\n```"
            "\n\n## Fox grid\n\n- a list\n---\n")
    import markdown

    html = markdown.markdown(text, extensions=["toc", "attr_list", "fenced_code"])
    assert heading_anchors(text) == set(re.findall(r'<h\d id="([^"]+)"', html)) == {
        "fox-grid", "title-two", "custom", "fox-grid_1", "-a-list"}
