"""`neighbors`: ground truth of the search, the replication flag, the unsafe threshold, errors,
escaping, and a build that renders again with `--frozen` once the dataset is gone.

Ground truth that holds with random CLIP weights: a picture of the dataset, queried as an image,
finds itself first at similarity 1.0; a picture planted twice is found twice at 1.0 and flagged.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import Elements, generate, make_zine
from test_index import (
    DUPLICATE,
    HOSTILE,
    N_ROWS,
    NO_PICTURE,
    UNSAFE_COPY,
    dataset_config,
    key,
    make_dataset,
    picture,
)
from test_index import indexed as indexed  # the module's fixture, shared

from generator.backends import faiss_index
from generator.clipmodels import tiny_clip_ref
from generator.errors import DirectiveError
from generator.kinds import neighbors
from generator.models import Resolver
from generator.plan import plan_site
from generator.render import PageRender, Renderer
from generator.store import Result, Store, StoreView
from generator.types import Context, Job


def search_image(root: Path, manifest: dict[str, Any], image: bytes, k: int,
                 threshold: float = 0.5) -> tuple[Store, Job]:
    """Run a "neighbors.search" job whose query is `image`, stored as an upstream result."""
    store = Store(root / f"store-{k}-{hash(image) & 0xffff}")
    upstream = "ab" * 32
    store.put(upstream, {"type": "test.image", "inputs": {}, "run": {}},
              Result(files={"image": (image, "jpg")}))
    job = Job("neighbors.search",
              {"algo": neighbors.ALGO, "index": manifest["fingerprint"], "k": k,
               "unsafe_threshold": threshold, "image": upstream},
              run={"dataset": "t", "folder": str(root / "data" / "clip"),
                   "images": str(root / "data" / "images"), "clip": tiny_clip_ref().as_dict()},
              needs=(upstream,))
    ((done, result),) = list(faiss_index.run_search([job], {"store": StoreView(store)}))
    assert isinstance(result, Result), result
    store.put(job.key, job.describe(), result)
    return store, done


def found(store: Store, job: Job) -> list[dict[str, Any]]:
    record = store.get(job.key)
    assert record is not None
    return list(record["data"]["neighbors"])


def test_a_dataset_picture_finds_itself_first_at_one(indexed: tuple[Path, dict[str, Any]]
                                                     ) -> None:
    root, manifest = indexed
    for i in (0, 11, N_ROWS - 1):
        store, job = search_image(root, manifest, picture(i), k=4)
        rows = found(store, job)
        assert rows[0]["key"] == key(i) and rows[0]["row"] == i
        assert rows[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert rows[1]["similarity"] < 1.0 - 1e-4  # nothing else is the same picture
        assert [r["similarity"] for r in rows] == sorted((r["similarity"] for r in rows),
                                                         reverse=True)
        assert [r["rank"] for r in rows] == [0, 1, 2, 3]
        # the neighbour's local picture is copied into the store, byte for byte
        record = store.get(job.key)
        assert record is not None
        assert store.file(record, rows[0]["image"]).read_bytes() == picture(i)
        assert rows[0]["domain"] == f"example{i % 4}.com"


def test_a_planted_duplicate_is_flagged(indexed: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = indexed
    store, job = search_image(root, manifest, picture(DUPLICATE[0]), k=3)
    rows = found(store, job)
    assert {r["key"] for r in rows[:2]} == {key(i) for i in DUPLICATE}
    assert rows[1]["similarity"] == pytest.approx(1.0, abs=1e-5)
    # the flag, as the figure draws it: at or above the threshold, and nothing else
    spec = neighbors.NeighborsSpec(id=None, caption=None, dataset="t", queries=(), k=3,
                                   by="prompt", threshold=0.99999, hotlink=False)
    page = PageRender(Renderer(store), url_for=lambda path: path)
    row = neighbors._row({"job": job, "group": "g", "prompt": "", "text": None, "cell": None},
                         spec, page)
    assert [n["flagged"] for n in row["neighbors"]] == [True, True, False]
    assert all(n["local"].startswith("assets/unmake/data/") for n in row["neighbors"])


def test_unsafe_rows_are_never_shown_and_are_replaced(indexed: tuple[Path, dict[str, Any]]
                                                      ) -> None:
    root, manifest = indexed
    # row 12 is row 5's picture with punsafe 0.9: as near as row 5 itself, and held back
    store, job = search_image(root, manifest, picture(UNSAFE_COPY[0]), k=3)
    rows = found(store, job)
    record = store.get(job.key)
    assert record is not None and record["data"]["held_back"] == 1
    assert key(UNSAFE_COPY[1]) not in {r["key"] for r in rows} and len(rows) == 3
    assert rows[0]["key"] == key(UNSAFE_COPY[0])
    # a threshold no row passes: the search widens until the index has no more rows
    store, job = search_image(root, manifest, picture(0), k=3, threshold=0.0)
    record = store.get(job.key)
    assert record is not None and record["data"]["neighbors"] == []
    assert record["data"]["held_back"] == N_ROWS - len(NO_PICTURE)
    # with the threshold at 1, it is shown
    store, job = search_image(root, manifest, picture(UNSAFE_COPY[0]), k=3, threshold=1.0)
    assert {r["key"] for r in found(store, job)[:2]} == {key(i) for i in UNSAFE_COPY}


# -- the directive: errors at file:line:key ---------------------------------------------------
PAGE = "# p\n\n" + generate(id="foxes", prompt="a {red|blue} fox", seeds=1) + "\n"
FENCE = len(PAGE.splitlines()) + 1  # the line of the neighbors fence


def plan(root: Path, body: str) -> Any:
    ctx = Context(root, root / "docs", Resolver({"default": "tiny"}, root),
                  Store(root / ".unmake"), dataset_config())
    return plan_site({"p.md": ("docs/p.md", PAGE + body)}, ctx)


@pytest.mark.parametrize(("body", "where", "message"), [
    ("dataset: t\nof: foxes\nquery: a fox\n", "query", "give either 'of:'"),
    ("dataset: t\n", None, "give either 'of:' (a figure's images) or 'query:'"),
    ("dataset: t\nquery: a fox\nk: 0\n", "k", "must be 1–50, got 0"),
    ("dataset: t\nquery: a fox\nby: seed\n", "by", "a 'query:' has no groups"),
    ("dataset: t\nquery: [a fox, a fox]\n", "query", "lists a text twice"),
    ("dataset: t\nof: foxes\nby: colour\n", "by", "must name an axis of the measured figures"),
    ("dataset: t\nquery: a fox\nthreshold: 2\n", "threshold", "must be 0.0–1.0, got 2"),
    ("dataset: nope\nquery: a fox\n", "dataset", "unknown dataset 'nope' (known: t)"),
])
def test_bad_directives_say_where(indexed: tuple[Path, dict[str, Any]], body: str,
                                  where: str | None, message: str) -> None:
    root, _ = indexed
    with pytest.raises(DirectiveError) as caught:
        plan(root, f"```neighbors\n{body}```\n")
    text = str(caught.value)
    lines = ["```neighbors", *body.splitlines()]
    line = FENCE + (next(i for i, text_line in enumerate(lines)
                          if text_line.startswith(f"{where}:"))
                 if where else 0)
    assert text.startswith(f"docs/p.md:{line}: neighbors"), text
    assert message in text, text


def test_an_unindexed_dataset_says_what_to_run(tmp_path: Path) -> None:
    make_dataset(tmp_path / "data")
    with pytest.raises(DirectiveError, match=rf"docs/p\.md:{FENCE + 1}: neighbors: 'dataset' "
                       r"dataset 't': .*does not exist; run `unmake index t` first"):
        plan(tmp_path, "```neighbors\ndataset: t\nquery: a fox\n```\n")


# -- end to end ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_build_then_frozen_without_the_dataset(tmp_path: Path,
                                               unmake_env: dict[str, str]) -> None:
    page = ("# Neighbours\n\n" + generate(id="foxes", prompt="a photo of a {red|blue} fox",
                                          seeds=[1]) +
            "\n```neighbors\nid: fox-neighbors\ndataset: t\nof: foxes\nk: 3\n"
            "caption: Nearest rows of <b>each</b> fox.\n```\n"
            "\n```neighbors\ndataset: t\nquery: 'a fox <script>x</script>'\nk: 37\n```\n")
    zine = make_zine(tmp_path / "z", {"index.md": page}, unmake_env, plugin=dataset_config())
    make_dataset(zine.root / "data")
    run = zine.unmake("build")
    assert run.rc == 1 and "run `unmake index t` first" in run.output
    run = zine.unmake("index", "t")
    assert run.rc == 0, run.output
    run = zine.unmake("build", "--strict")
    assert run.rc == 0, run.output

    def check(html: str) -> None:
        doc = Elements(html)
        cells = doc.all("div", "unmake-nb-cell")
        # 2 foxes × 3, then every row with a picture but the unsafe one
        assert len(cells) == 2 * 3 + N_ROWS - len(NO_PICTURE) - 1
        pictures = [a["src"] for a in doc.all("img") if "/data/" in a.get("src", "")]
        assert len(pictures) == len(cells)
        for src in pictures:
            assert zine.site_file("index.md", src).is_file()
        assert "<script>alert(1)</script>" not in html and "<script>x</script>" not in html
        assert HOSTILE in doc.text() and "“a fox <script>x</script>”" in doc.text()
        assert str(tmp_path) not in html
        assert len(doc.all("img", "off-glb")) >= 2 + 6  # the generated images and theirs
        links = [a["href"] for a in doc.all("a") if "example" in a.get("href", "")]
        assert links and all(re.match(r"^https://img\d\.example\d\.com/p/\d+\.jpg$", h)
                             for h in links)

    check(zine.html())
    # the dataset and its index go away: the site renders from the store
    shutil.move(zine.root / "data", tmp_path / "elsewhere")
    shutil.rmtree(zine.site)
    run = zine.unmake("build", "--frozen", "--strict")
    assert run.rc == 0, run.output
    check(zine.html())
