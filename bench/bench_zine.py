"""What does `unmake zine` cost over plain WeasyPrint printing the same document?

Makes a zine in bench/out/zine/ of --pages pages, each a heading, prose and --grids 2x2
`generate` grids (tiny model, 32x32, 2 steps; an untimed `unmake build` fills the store once),
and an untimed `unmake zine --html` keeps the combined HTML and stylesheets it prints. Then it
times, each a fresh subprocess from python start to exit, alternating, --repeat times each:

  unmake  `unmake zine`: the site rendered in `off` mode (nothing runs), the pages combined,
          numbered and pointed at the original PNGs, laid out and written by WeasyPrint
  bare    bench/_bare_zine.py: WeasyPrint alone on the kept zine.html with the same three
          stylesheets, writing the PDF (its default URL fetcher, no imposition)

and prints the medians, their ratio (target <= 1.2) and the seconds per printed page.

Run: .venv/bin/python bench/bench_zine.py [--pages 12] [--grids 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _util import BIN, OUT, ROOT, child_env, fresh, load_note, median, run_timed, table
from pypdf import PdfReader

TARGET = 1.2
THINGS = ("lantern", "teapot", "bicycle", "lighthouse", "violin", "cactus", "umbrella", "kite")
PROSE = ("We hold everything fixed but one word of the prompt and look at what changes. Each "
         "image starts from the noise its seed gives, so a column shares its starting point. ")
CONFIG = """\
site_name: bench zine
docs_dir: docs
site_dir: site
theme: {name: material, font: false}
plugins:
  - search
  - glightbox: {skip_classes: [off-glb]}
  - unmake: {store: .unmake, models: {default: tiny}}
"""


def make_zine(root: Path, pages: int, grids: int) -> None:
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / "mkdocs.yml").write_text(CONFIG, "utf-8")
    for p in range(pages):
        text = [f"# Chapter {p + 1}\n", PROSE * 3 + "\n"]
        for g in range(grids):
            thing = THINGS[(p * grids + g) % len(THINGS)]
            text.append(f"## {thing}\n\n{PROSE}\n\n```generate\nid: g{p}-{g}\n"
                        f"prompt: \"a {{red|blue}} {thing}, plate {p}.{g}\"\nseeds: [1, 2]\n"
                        f"steps: 2\nsize: 32\ncaption: Grid {p}.{g}.\n```\n")
        (root / "docs" / f"p{p:03d}.md").write_text("\n".join(text), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--grids", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = child_env(None)
    root = OUT / "zine"

    # 1. The zine and its store (kept between runs of the same shape).
    shape = root / f".shape-{args.pages}x{args.grids}"
    if not shape.exists():
        fresh(root)
        make_zine(root, args.pages, args.grids)
        print(f"bench_zine: filling the store ({args.pages * args.grids * 4} images)…")
        run_timed([str(BIN / "unmake"), "build"], root, env)
        shape.touch()
    kept = root / "kept"
    shutil.rmtree(kept, ignore_errors=True)
    run_timed([str(BIN / "unmake"), "zine", "--html", str(kept), "-o", "warm.pdf"], root, env)
    pages = len(PdfReader(root / "warm.pdf").pages)

    # 2. Alternate the two sides, alternating which goes first.
    sides = {
        "unmake": [str(BIN / "unmake"), "zine", "-o", "unmake.pdf"],
        "bare": [sys.executable, str(ROOT / "bench" / "_bare_zine.py"), str(kept), "bare.pdf"],
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for i in range(args.repeat):
        for name in (list(sides) if i % 2 == 0 else list(reversed(sides))):
            timed = run_timed(sides[name], root, env)
            runs[name].append((timed.wall, timed.cpu))
            print(f"  run {i + 1} {name}: {timed.wall:.2f} s wall, {timed.cpu:.2f} s cpu")
    bare_pages = len(PdfReader(root / "bare.pdf").pages)

    # 3. Report.
    rows = []
    for name, values in runs.items():
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        rows.append([name, *(f"{w:.2f}" for w in walls), f"{median(walls):.2f}",
                     f"{median(cpus):.2f}", f"{median(walls) / pages:.3f}"])
    header = ["side", *(f"run {i + 1}" for i in range(args.repeat)), "median wall",
              "median cpu", "s / page"]
    print(table(f"bench_zine: {args.pages} pages x {args.grids} grids (2x2): a {pages}-page "
                f"A5 PDF (bare: {bare_pages} pages)", header, rows))
    for i, what in ((0, "wall"), (1, "cpu")):
        ratio = (median([r[i] for r in runs["unmake"]])
                 / median([r[i] for r in runs["bare"]]))
        print(f"unmake / bare ({what}): {ratio:.2f}x (target <= {TARGET}x)")
    note = load_note()
    if note:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
