"""`unmake gc`: what no page of the site uses, listed (a dry run) or removed (--delete).

One zine: a grid and a measure of it on the pages that stay, and a page with a grid and a measure
of its own that is removed. What the remaining pages use (the measure's upstream images, the web
copies and contact sheet of the images kept, the memos) must survive, and a frozen build must
still render the site from the store alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Zine, generate, make_zine

from generator.store import Store


def measure(**body: Any) -> str:
    text = yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)
    return f"```measure\n{text}```\n"


PAGES = {
    "index.md": "# Kept\n\n" + generate(id="foxes", prompt="a {red|blue} fox", seeds=[1, 2]),
    "readings.md": "# Readings\n\n" + measure(id="fox-colours", of="foxes", palette=2),
    "extra.md": "# Extra\n\n" + generate(id="owls", prompt="an {owl|eel}", seeds=[7])
    + "\n" + measure(id="owl-colours", of="owls", palette=2),
}


def files(root: Path) -> dict[str, int]:
    """Every file of a folder -> its mtime (ns), less the locks builds hold while they run."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in sorted(root.rglob("*")) if p.is_file() and p.parts[len(root.parts)] != "locks"}


def listed(run_output: str) -> list[str]:
    return re.findall(r"^  ((?:records|blobs|derived)/\S+)", run_output, re.M)


@pytest.fixture(scope="module")
def whole(built: Zine, tmp_path_factory: pytest.TempPathFactory) -> Zine:
    """The zine built whole (once; tests change copies)."""
    z = make_zine(tmp_path_factory.mktemp("gc") / "z", PAGES, built.env)
    run = z.unmake("build")
    assert run.rc == 0, run.output
    return z


@pytest.fixture
def built_then_cut(whole: Zine, tmp_path: Path) -> tuple[Zine, dict[str, Any]]:
    """A copy of the built zine with extra.md removed; and what extra.md alone had made."""
    z = whole.copy(tmp_path / "z")
    store = Store(z.store)
    records = {k: store.get(k) for k in z.records()}
    owls = {k for k, r in records.items() if r["type"] == "generate.image"
            and r["inputs"]["prompt"] in ("an owl", "an eel")}
    owl_measures = {k for k, r in records.items() if set(r["inputs"].get("needs", [])) & owls}
    assert len(owls) == 2 and owl_measures
    unused_blobs = {f"blobs/{r['files']['image']['sha256'][:2]}/"
                    f"{r['files']['image']['sha256']}.png" for k, r in records.items()
                    if k in owls}
    (z.docs / "extra.md").unlink()
    return z, {"records": {f"records/{k[:2]}/{k}.json" for k in owls | owl_measures},
               "blobs": unused_blobs, "owls": owls}


def test_gc_lists_what_no_page_uses_and_removes_it_only_when_asked(
        built_then_cut: tuple[Zine, dict[str, Any]]) -> None:
    z, unused = built_then_cut
    before = files(z.store)

    # 1. A dry run lists exactly what the removed page alone used, and removes nothing.
    dry = z.unmake("gc")
    assert dry.rc == 0, dry.output
    shown = listed(dry.stdout)
    records = {p for p in shown if p.startswith("records/")}
    blobs = {p for p in shown if p.startswith("blobs/")}
    derived = {p for p in shown if p.startswith("derived/")}
    assert records == unused["records"]
    assert blobs == unused["blobs"]
    webps = {f"derived/{b.split('/')[2][:2]}/{b.split('/')[2][:-4]}.webp" for b in blobs}
    sheets = derived - webps
    assert webps <= derived and len(sheets) == 1  # the owls' web copies and contact sheet
    assert "an owl' seed 7" in dry.stdout  # a record says what it was
    size = sum((z.store / p).stat().st_size for p in shown)
    assert re.search(rf"unmake gc: {len(records)} records, 2 blobs, {len(derived)} derived "
                     r"\(\d", dry.stdout)
    assert f"({size / 1000:.1f} kB)" in dry.stdout or f"({size} B)" in dry.stdout
    assert "dry run, nothing removed" in dry.stdout
    assert files(z.store) == before

    # 2. --delete removes those and nothing else: not the measure's upstream images, not the
    # web copies or the sheet of the images kept, not the memos.
    done = z.unmake("gc", "--delete")
    assert done.rc == 0, done.output
    after = files(z.store)
    assert set(before) - set(after) == set(shown)
    assert {p: after[p] for p in after} == {p: before[p] for p in after}
    assert any(p.startswith("memo/") for p in after)
    verify = z.unmake("verify")
    assert verify.rc == 0, verify.output
    assert "0 problem(s)" in verify.output

    # 3. The site builds from the store alone, as it was, and gc finds nothing more.
    frozen = z.unmake("build", "--frozen")
    assert frozen.rc == 0, frozen.output
    assert "8 jobs: 8 cached, 0 to run" in frozen.output
    assert files(z.store) == after  # no web copy or sheet had to be made again
    assert "unmake gc: 0 records, 0 blobs, 0 derived (0 B)" in z.unmake("gc").stdout


def test_gc_keeps_what_a_site_sharing_the_store_uses(
        built_then_cut: tuple[Zine, dict[str, Any]], tmp_path: Path) -> None:
    z, unused = built_then_cut
    other = make_zine(tmp_path / "other", {"index.md": PAGES["extra.md"]}, z.env,
                      plugin={"store": str(z.store)})
    run = z.unmake("gc", "--also", str(other.root / "mkdocs.yml"))
    assert run.rc == 0, run.output
    assert not set(listed(run.stdout)) & (unused["records"] | unused["blobs"])
    assert "that no page of these 2 sites uses" in run.stdout


def test_gc_deletes_nothing_while_a_build_runs(
        built_then_cut: tuple[Zine, dict[str, Any]]) -> None:
    z, _ = built_then_cut
    before = files(z.store)
    claim = Store(z.store).claim("f" * 64, "docs/index.md:3")  # as a running build does
    assert claim is not None
    try:
        run = z.unmake("gc", "--delete")
    finally:
        claim.release()
    assert run.rc == 1
    assert re.search(r"unmake: a build is running on this store \(1 job\(s\), e\.g\. pid \d+ on ",
                     run.stderr), run.stderr
    assert files(z.store) == before
