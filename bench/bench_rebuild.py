"""What does a no-op `unmake build` cost over a plain mkdocs build of the same static site?

Makes sites in bench/out/rebuild/ with the same --pages pages (prose, headings and --grids
2x2 `generate` grids a page), the same theme and plugins (material, search, glightbox):

  unmake  the zine: each grid is a `generate` directive; the store is filled by an untimed first
          build, so the timed builds run nothing (a no-op rebuild: plan, read the store, render)
  static  no unmake plugin: each directive is replaced by the very <figure> HTML unmake rendered
          for it, and the files unmake published (site/assets/unmake: WebP, PNG, contact sheets,
          CSS) are copied into docs/, so mkdocs copies them into the site itself

and times `unmake build` against `mkdocs build`, each a fresh subprocess from python start to exit,
alternating, --repeat times each; prints medians and their ratio (target: <= 1.2). For scale it
also times a third site, for reference only:

  prose   the same pages with the grids left out (headings and prose only, no images)

Images: by default every grid is distinct (pages x grids x 4 images: 4,000 for 100 x 10), made
with the tiny model at 32x32 and 2 steps. The store lives in bench/out/rebuild-store/ and is kept
between runs, so only the first run pays for generating them (about 6 minutes on 2 CPU cores);
--distinct N reuses N grids' prompts round-robin (identical jobs dedupe) for a quicker first run.

Run: .venv/bin/python bench/bench_rebuild.py [--pages 100] [--grids 10] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

from _util import BIN, OUT, child_env, fresh, load_note, median, run_timed, table

TARGET = 1.2
COLOURS = ("red", "blue")
THINGS = ("lantern", "teapot", "bicycle", "lighthouse", "violin", "cactus", "umbrella", "kite")
PROSE = (
    "We hold everything fixed but one word of the prompt and look at what changes. "
    "Each image starts from the noise its seed gives, so a column shares its starting point, "
    "and differences down a column are the prompt's doing. Nothing here is a finding about "
    "real models: the tiny model has random weights; the page exists to be rebuilt."
)
_FIGURE = re.compile(r'<figure class="unmake-figure.*?</figure>', re.S)
_ARTICLE = re.compile(r"<article[^>]*>(.*?)</article>", re.S)

CONFIG = """\
site_name: bench rebuild
docs_dir: docs
site_dir: site
theme:
  name: material
  font: false
markdown_extensions:
  - admonition
  - attr_list
  - md_in_html
  - toc:
      permalink: true
{extra}plugins:
  - search
  - glightbox:
      skip_classes: [off-glb]
{unmake}"""


def directive(page: int, grid: int, args: argparse.Namespace) -> str:
    k = (page * args.grids + grid) % args.distinct
    thing = THINGS[k % len(THINGS)]
    return (f"```generate\n"
            f"prompt: \"a {{{'|'.join(COLOURS)}}} {thing}, study {k}\"\n"
            f"seeds: 2\n"
            f"steps: {args.steps}\n"
            f"size: {args.size}\n"
            f"caption: \"Page {page + 1}, grid {grid + 1}: two colours, two seeds.\"\n"
            f"```")


def page_blocks(page: int, args: argparse.Namespace) -> list[str | tuple[int, int]]:
    """A page as Markdown blocks; (page, grid) stands for a grid."""
    blocks: list[str | tuple[int, int]] = [f"# Study {page + 1}", PROSE]
    for grid in range(args.grids):
        blocks += [f"## Grid {grid + 1}", PROSE, (page, grid)]
    return blocks


def write_zine(folder: Path, store: Path, args: argparse.Namespace) -> None:
    fresh(folder)
    (folder / "docs").mkdir()
    unmake = (f"  - unmake:\n      store: {store}\n      batch_size: 4\n"
              f"      models:\n        default: tiny\n")
    (folder / "mkdocs.yml").write_text(CONFIG.format(extra="", unmake=unmake), "utf-8")
    for page in range(args.pages):
        blocks = [b if isinstance(b, str) else directive(*b, args)
                  for b in page_blocks(page, args)]
        (folder / "docs" / f"study-{page + 1:03d}.md").write_text("\n\n".join(blocks) + "\n")


def write_static(folder: Path, zine: Path, args: argparse.Namespace) -> None:
    """The same pages with unmake's rendered figures inlined and its files in docs/."""
    fresh(folder)
    (folder / "docs").mkdir()
    extra = "extra_css:\n  - assets/unmake/unmake.css\n"
    (folder / "mkdocs.yml").write_text(CONFIG.format(extra=extra, unmake=""), "utf-8")
    shutil.copytree(zine / "site" / "assets" / "unmake", folder / "docs" / "assets" / "unmake")
    for page in range(args.pages):
        name = f"study-{page + 1:03d}"
        html = (zine / "site" / name / "index.html").read_text("utf-8")
        figures = _FIGURE.findall(html)
        if len(figures) != args.grids:
            raise SystemExit(f"bench: {name}: found {len(figures)} figures, not {args.grids}")
        blocks = []
        for block in page_blocks(page, args):
            if isinstance(block, str):
                blocks.append(block)
            else:  # raw HTML block: no blank lines inside, so Markdown leaves it whole
                figure = figures[block[1]]
                blocks.append("\n".join(ln for ln in figure.splitlines() if ln.strip()))
        (folder / "docs" / f"{name}.md").write_text("\n\n".join(blocks) + "\n", "utf-8")


def write_prose(folder: Path, args: argparse.Namespace) -> None:
    """The same pages without their grids: what the site costs before any image."""
    fresh(folder)
    (folder / "docs").mkdir()
    (folder / "mkdocs.yml").write_text(CONFIG.format(extra="", unmake=""), "utf-8")
    for page in range(args.pages):
        blocks = [b for b in page_blocks(page, args) if isinstance(b, str)]
        (folder / "docs" / f"study-{page + 1:03d}.md").write_text("\n\n".join(blocks) + "\n")


def same_pages(zine: Path, static: Path, pages: int) -> int:
    """How many pages have the same <article> HTML in both sites (blank lines ignored)."""
    def article(site: Path, name: str) -> str:
        match = _ARTICLE.search((site / name / "index.html").read_text("utf-8"))
        text = match.group(1) if match else ""
        return "\n".join(ln.strip() for ln in text.splitlines() if ln.strip())

    return sum(article(zine / "site", n) == article(static / "site", n)
               for n in (f"study-{p + 1:03d}" for p in range(pages)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--grids", type=int, default=10, help="2x2 grids a page (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed builds of each site")
    parser.add_argument("--distinct", type=int, default=None,
                        help="distinct grids, reused round-robin (default: all distinct)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS while filling the store")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more no-op unmake build (cProfile) and print the top")
    args = parser.parse_args()
    if min(args.pages, args.grids, args.repeat) < 1:
        parser.error("--pages, --grids and --repeat must be at least 1")
    args.distinct = args.distinct or args.pages * args.grids

    env = child_env(args.threads)
    base = OUT / "rebuild"
    zine, static, prose = base / "zine", base / "static", base / "prose"
    store = OUT / "rebuild-store"  # kept between runs: only new images are generated

    write_zine(zine, store, args)
    write_prose(prose, args)
    commands = {
        "unmake": ([str(BIN / "unmake"), "build", "-f", str(zine / "mkdocs.yml")], zine),
        "static": ([str(BIN / "mkdocs"), "build", "-f", str(static / "mkdocs.yml")], static),
        "prose": ([str(BIN / "mkdocs"), "build", "-f", str(prose / "mkdocs.yml")], prose),
    }
    unmake_cmd = commands["unmake"][0]
    print(f"filling the store ({args.pages * args.grids} grids, {args.distinct} distinct, "
          f"{args.distinct * 4} images at most; kept in {store})…", flush=True)
    t0 = time.perf_counter()
    seed = run_timed(unmake_cmd, zine, env)
    print(f"  first build: {time.perf_counter() - t0:.1f} s "
          f"({_grep(seed.stderr, r'unmake: (nothing to run.*|ran .*)')})", flush=True)
    run_timed(unmake_cmd, zine, env)  # untimed warm-up of the no-op unmake side
    write_static(static, zine, args)  # from that build's pages: the HTML of the code as it is
    run_timed(*commands["static"], env)  # and of the other sides
    run_timed(*commands["prose"], env)
    matching = same_pages(zine, static, args.pages)

    runs: dict[str, list[tuple[float, float, float]]] = {side: [] for side in commands}
    for i in range(args.repeat):
        order = ["unmake", "static"] if i % 2 == 0 else ["static", "unmake"]
        for side in [*order, "prose"]:
            timed = run_timed(*commands[side], env)
            if side == "unmake" and "unmake: nothing to run" not in timed.stderr:
                sys.stderr.write(timed.stderr)
                raise SystemExit("bench: the rebuild was not a no-op")
            built = float(_grep(timed.stderr, r"Documentation built in ([\d.]+) seconds") or 0)
            runs[side].append((timed.wall, timed.cpu, built))
            print(f"  run {i + 1} {side:6s} {timed.wall:6.2f} s wall, {timed.cpu:6.2f} s CPU, "
                  f"mkdocs says {built:.2f} s", flush=True)

    def fmt(side: str, i: int) -> list[str]:
        values = [r[i] for r in runs[side]]
        return [f"{v:.2f}" for v in values] + [f"{median(values):.2f}"]

    header = ["seconds", *(f"run {i + 1}" for i in range(args.repeat)), "median"]
    rows = [
        ["unmake build, no-op (wall)", *fmt("unmake", 0)],
        ["mkdocs build, static (wall)", *fmt("static", 0)],
        ["unmake build, no-op (CPU)", *fmt("unmake", 1)],
        ["mkdocs build, static (CPU)", *fmt("static", 1)],
        ["unmake: 'built in' (mkdocs)", *fmt("unmake", 2)],
        ["static: 'built in' (mkdocs)", *fmt("static", 2)],
        ["mkdocs build, prose only (wall)", *fmt("prose", 0)],
    ]
    images = len(list((zine / "site" / "assets" / "unmake" / "img").glob("*.webp")))
    print()
    print(table(f"bench_rebuild: {args.pages} pages x {args.grids} grids (2x2), "
                f"{images} distinct images, tiny {args.size}x{args.size}", header, rows))
    for label, i in (("wall", 0), ("CPU", 1), ("in-process 'built in'", 2)):
        ratio = median([r[i] for r in runs["unmake"]]) / median([r[i] for r in runs["static"]])
        verdict = f"  (target <= {TARGET}x: " + ("within target)" if ratio <= TARGET
                                                  else "ABOVE target)")
        print(f"ratio unmake / static, {label} (medians): {ratio:.3f}x"
              + (verdict if i == 0 else ""))
    print(f"pages with the same <article> HTML in both sites: {matching}/{args.pages}")
    prose_wall = median([r[0] for r in runs["prose"]])
    print(f"for scale, the pages without their grids build in {prose_wall:.2f} s: the grids add "
          f"{median([r[0] for r in runs['unmake']]) - prose_wall:.2f} s to a no-op unmake build, "
          f"{median([r[0] for r in runs['static']]) - prose_wall:.2f} s to the static one")
    note = load_note()
    if note:
        print(f"machine: {note}")
    if args.profile:
        profile(zine, env)
    return 0


def profile(zine: Path, env: dict[str, str]) -> None:
    """One more no-op build under cProfile; the functions of unmake and mkdocs that cost most."""
    import pstats

    out = OUT / "rebuild.prof"
    run_timed([sys.executable, "-m", "cProfile", "-o", str(out), str(BIN / "unmake"), "build",
               "-f", str(zine / "mkdocs.yml")], zine, env)
    print(f"\nprofile of one no-op unmake build ({out}), by cumulative time:")
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(r"generator|mkdocs/(commands|structure)", 30)


def _grep(text: str, pattern: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else ""


if __name__ == "__main__":
    sys.exit(main())
