"""The `unmake` command line: a thin layer over the mkdocs plugin and the store."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

COMMANDS_HELP = {
    "build": "plan, generate what is missing (progress bar), build the site",
    "plan": "show what is cached and what would run, by model; loads no model",
    "serve": "live preview of the site (mkdocs serve with the plugin)",
    "verify": "check every stored artifact against its hash and record",
    "gc": "list the stored results no page of the site uses (remove them with --delete)",
    "new": "start a new zine project in DIR from the template",
    "index": "CLIP embeddings of a dataset's local pictures and captions, and a faiss index "
             "(what `neighbors` searches); resumable",
    "zine": "print the site as a PDF zine (WeasyPrint) from the store; runs no model",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unmake", description="A critical zine builder.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in COMMANDS_HELP.items():
        p = sub.add_parser(name, help=text, description=text)
        if name == "new":
            p.add_argument("directory", help="folder to create (must be empty or absent)")
            continue
        p.add_argument("-f", "--config-file", default="mkdocs.yml", help="mkdocs.yml to use")
        if name == "verify":
            p.add_argument("--replay", type=float, metavar="FRACTION",
                           help="also make a seeded random FRACTION (0.1: a tenth) of the stored "
                                "images again here and compare their pixels")
            p.add_argument("--replay-seed", type=int, default=0, metavar="N",
                           help="the seed that picks the images to replay (default 0)")
            continue
        if name == "index":
            p.add_argument("dataset", nargs="+",
                           help="one or more dataset aliases from plugins.unmake.datasets")
            p.add_argument("--shard-size", type=int, default=10_000, metavar="N",
                           help="rows per shard (default 10000); a killed run redoes at most one")
            p.add_argument("--batch-size", type=int, metavar="N",
                           help="pictures per CLIP forward pass (default: clip_batch_size, 32)")
            p.add_argument("--exact-max", type=int, default=1_000_000, metavar="N",
                           help="exact search up to N rows, IVF-PQ above (default 1000000)")
        if name == "zine":
            _zine_arguments(p)
            continue
        if name == "gc":
            p.add_argument("--delete", action="store_true",
                           help="remove what is listed (without it, nothing is removed)")
            p.add_argument("--also", action="append", default=[], metavar="CONFIG",
                           help="another mkdocs.yml sharing this store, whose pages keep their "
                                "results too (repeatable)")
        p.add_argument("--model", action="append", default=[], metavar="ALIAS=REF",
                       help="point a model alias at 'tiny', a folder or an org/repo id "
                            "(also: UNMAKE_MODEL_<ALIAS>=REF)")
        if name in ("build", "serve"):
            p.add_argument("--frozen", action="store_true",
                           help="never run a model; fail listing every missing result")
            p.add_argument("--force", action="store_true", help="run every job again")
        if name == "build":
            p.add_argument("--strict", action="store_true", help="fail on warnings")
            p.add_argument("-d", "--site-dir", help="where to build (default: site/)")
            p.add_argument("--executor", choices=("local", "ray"),
                           help="run the jobs here or on Ray actors (default: the config's "
                                "`executor`, else local)")
        if name == "serve":
            p.add_argument("-a", "--dev-addr", default="127.0.0.1:8000", help="IP:PORT")
        if name == "plan":
            p.add_argument("-v", "--verbose", action="store_true", help="list every job to run")
            p.add_argument("--executor", choices=("local", "ray"),
                           help="estimate for this executor (default: the config's)")
    return parser


def _zine_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="the PDF to write (default: zine.pdf beside mkdocs.yml)")
    p.add_argument("--page", default="a5", help="a5 (default), a4, letter or WIDTHxHEIGHT "
                   "with units, e.g. 120mmx180mm")
    p.add_argument("--margin", default="15mm", help="page margin (default 15mm)")
    p.add_argument("--bleed", default="0mm", help="bleed around each page, e.g. 3mm (default 0)")
    p.add_argument("--marks", action="store_true", help="print crop marks (with --bleed)")
    p.add_argument("--layout", default="essay", choices=["essay", "catalogue"],
                   help="essay: the pages as chapters (default); catalogue: one image a page "
                        "with its wall label")
    p.add_argument("--impose", choices=["saddle", "onesheet"],
                   help="impose for folding: saddle (a stapled booklet), onesheet (8 pages on "
                        "one sheet)")
    p.add_argument("--html", metavar="DIR", help="also keep the combined HTML (zine.html), its "
                   "stylesheets and the site it uses in DIR, a new folder (to debug print CSS)")


def _models(pairs: list[str]) -> dict[str, str]:
    models = {}
    for pair in pairs:
        alias, sep, ref = pair.partition("=")
        if not sep or not alias or not ref:
            raise SystemExit(f"unmake: --model takes ALIAS=REF, got {pair!r}")
        models[alias] = ref
    return models


def _load(args: argparse.Namespace, **overrides: Any) -> tuple[Any, Any]:
    from mkdocs.config import load_config

    if not Path(args.config_file).is_file():
        raise SystemExit(f"unmake: {args.config_file} not found (run in the zine's folder or "
                         "pass -f path/to/mkdocs.yml)")
    config = load_config(args.config_file, **overrides)
    plugin = config.plugins.get("unmake")
    if plugin is None:
        raise SystemExit(f"unmake: {args.config_file} does not enable the plugin; add "
                         "'- unmake' under 'plugins:'")
    if getattr(args, "frozen", False) and getattr(args, "force", False):
        raise SystemExit("unmake: --frozen and --force contradict each other")
    plugin.cli_mode = ("frozen" if getattr(args, "frozen", False)
                       else "force" if getattr(args, "force", False) else None)
    plugin.cli_models = _models(getattr(args, "model", []))
    plugin.cli_executor = getattr(args, "executor", None)
    return config, plugin


def cmd_build(args: argparse.Namespace) -> int:
    from mkdocs.commands.build import build

    overrides = {"strict": args.strict or None, "site_dir": args.site_dir}
    config, _ = _load(args, **{k: v for k, v in overrides.items() if v is not None})
    config.plugins.on_startup(command="build", dirty=False)  # as `mkdocs build` does
    try:
        build(config)
    finally:
        config.plugins.on_shutdown()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mkdocs.commands import serve

    # mkdocs serve reloads the config on each rebuild, so pass choices through the environment
    mode = "frozen" if args.frozen else "force" if args.force else None
    if mode:
        os.environ["UNMAKE_MODE"] = mode
    for alias, ref in _models(args.model).items():
        os.environ[f"UNMAKE_MODEL_{alias.upper()}"] = ref
    serve.serve(config_file=args.config_file, dev_addr=args.dev_addr)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from mkdocs.structure.files import get_files

    from .kinds import describe

    config, plugin = _load(args)
    plugin.command = "plan"  # nothing is built: keep site_dir where it is
    config = config.plugins.on_config(config)
    plan = plugin.make_plan(get_files(config))
    by_group: dict[str, Counter[str]] = {}
    for key, job in plan.jobs.items():
        on, _ = describe(job)
        by_group.setdefault(f"{job.type} [{on}]" if on else job.type, Counter())[
            "cached" if key in plan.cached else "to run"] += 1
    print(f"unmake plan: {plan.summary()}")
    for group, counts in sorted(by_group.items()):
        print(f"  {group}: {counts['cached']} cached, {counts['to run']} to run")
    if args.verbose:
        for job in plan.missing:
            print(f"    {', '.join(job.origins)}: {job.type} {describe(job)[1]}")
    _print_estimate(plan, plugin)
    return 0


def _print_estimate(plan: Any, plugin: Any) -> None:
    """Minutes the missing jobs would take, from the seconds the store's records measured."""
    from .estimate import duration, estimate, ray_actors
    from .kinds import describe

    groups = estimate(plan, plugin.ctx.store)
    if not groups:
        return
    total, unmeasured = 0.0, 0
    print("estimate (from the seconds stored records took):")
    for group in sorted(groups, key=lambda g: tuple(map(str, g.key))):
        job = group.jobs[0]
        on, _ = describe(job)
        size = (f" {job.inputs['width']}×{job.inputs['height']}"
                if "width" in job.inputs and "height" in job.inputs else "")
        print(f"  {job.type}{f' [{on}]' if on else ''}{size}: {group.line()}")
        if group.each is None:
            unmeasured += len(group.jobs)
        else:
            total += len(group.jobs) * group.each
    rest = f"; {unmeasured} job(s) with no measurement yet not counted" if unmeasured else ""
    executor = plugin.cli_executor or plugin.config.get("executor", "local")
    if executor == "ray":
        actors, how = ray_actors(dict(plugin.config))
        if actors:
            print(f"  in all: about {duration(total / actors)} on {actors} Ray actor(s) ({how})"
                  f"{rest}")
        else:
            print(f"  in all: about {duration(total)} on one actor; divide by the actors of "
                  f"{how}{rest}")
    else:
        print(f"  in all: about {duration(total)} here{rest}")


def cmd_verify(args: argparse.Namespace) -> int:
    from .execute import run_options
    from .store import Store

    config, plugin = _load(args)
    root = Path(config.config_file_path).resolve().parent
    store = Store(root / plugin.config.store)
    problems = store.verify()
    count = sum(1 for _ in (store.root / "records").glob("*/*.json"))
    for problem in problems:
        print(problem)
    if args.replay is not None:
        if not 0 < args.replay <= 1:
            raise SystemExit(f"unmake: --replay takes a fraction of the stored images, more than "
                             f"0 and at most 1 (0.1 is a tenth), got {args.replay:g}")
        from .replay import replay

        report = replay(store, args.replay, args.replay_seed, run_options(dict(plugin.config)))
        for item in report.replayed:
            if item.status != "bit-exact":
                print(item.line)
        print(report.summary(args.replay, args.replay_seed))
        problems += report.problems
    print(f"unmake verify: {count} records, {len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_gc(args: argparse.Namespace) -> int:
    from mkdocs.structure.files import get_files

    from .kinds import JOB_KINDS
    from .types import Job

    # 1. Plan every site that keeps results in this store; what their pages use is kept.
    keep: set[str] = set()
    missing = 0
    store = None
    for config_file in [args.config_file, *args.also]:
        config, plugin = _load(argparse.Namespace(**{**vars(args), "config_file": config_file}))
        plugin.command = "plan"  # nothing is built: keep site_dir where it is
        plugin.cli_mode = "off"  # as --frozen: models resolve as they did when the site was built
        config = config.plugins.on_config(config)
        plan = plugin.make_plan(get_files(config))
        if store is None:
            store = plugin.ctx.store
        elif plugin.ctx.store.root.resolve() != store.root.resolve():
            raise SystemExit(f"unmake: {config_file} keeps its results in "
                             f"{plugin.ctx.store.root}, not in {store.root}; --also names sites "
                             "that share this store")
        keep |= set(plan.jobs)
        missing += len(plan.missing)
    assert store is not None

    # 2. List what nothing keeps, with its size, and remove it if asked.
    unused = store.unused(keep)
    for item in unused:
        what = ""
        if item.record is not None:
            job_type = str(item.record.get("type", "?"))
            what = job_type
            if job_type in JOB_KINDS:
                try:
                    job = Job(job_type, item.record.get("inputs", {}),
                              run=item.record.get("run", {}))
                    what = f"{job_type} {JOB_KINDS[job_type].job_line(job)[1]}"
                except (KeyError, TypeError, ValueError):
                    pass
        print(f"  {item.path.relative_to(store.root)}  {_size(item.size)}"
              + (f"  {what}" if what else ""))
    parts = {name: [u for u in unused if u.path.relative_to(store.root).parts[0] == name]
             for name in ("records", "blobs", "derived")}
    counts = ", ".join(f"{len(items)} {name}" for name, items in parts.items())
    total = _size(sum(u.size for u in unused))
    sites = "this site" if not args.also else f"these {1 + len(args.also)} sites"
    print(f"unmake gc: {counts} ({total}) that no page of {sites} uses")
    if missing:
        print(f"unmake gc: note: {missing} job(s) of {sites} have no stored result yet; if they "
              "should, the models may resolve differently here than where the site was built")
    if not args.delete:
        print("unmake gc: dry run, nothing removed; `unmake gc --delete` removes them")
        return 0
    running = store.held()
    if running:
        raise SystemExit(f"unmake: a build is running on this store ({len(running)} job(s), "
                         f"e.g. pid {running[0].get('pid')} on {running[0].get('host')}); run "
                         "`unmake gc --delete` when it is done")
    for item in unused:
        item.path.unlink(missing_ok=True)
    print(f"unmake gc: removed {len(unused)} file(s), {total}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from . import clipmodels, index
    from . import datasets as ds

    config, plugin = _load(args)
    plugin.command = "plan"  # nothing is built: keep site_dir where it is
    config = config.plugins.on_config(config)
    for name, value in (("--shard-size", args.shard_size), ("--exact-max", args.exact_max),
                        ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise SystemExit(f"unmake: {name} must be at least 1, got {value}")
    ctx = plugin.ctx
    registry = ds.for_context(ctx)
    datasets = [registry.get(name) for name in args.dataset]  # every alias checked first
    options = index.Options(shard_size=args.shard_size, exact_max=args.exact_max,
                            batch_size=args.batch_size or plugin.config.clip_batch_size,
                            device=plugin.config.device)
    for dataset in datasets:
        clip = clipmodels.for_context(ctx).resolve(dataset.config.clip_model)
        index.build(dataset, registry, clip, options)
    ctx.store.save_memos()
    return 0


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6)):
        if n < scale * 1000:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e9:.1f} GB"


def cmd_zine(args: argparse.Namespace) -> int:
    from . import zine

    config, plugin = _load(args)
    options = zine.ZineOptions(
        output=Path(args.output) if args.output else zine.default_output(config),
        page=zine.page_size(args.page), margin=zine.length(args.margin, "--margin"),
        bleed=zine.length(args.bleed, "--bleed"), marks=args.marks, layout=args.layout,
        impose=args.impose, keep=Path(args.html) if args.html else None)
    report = zine.build_zine(config, plugin, options)
    for line in report.missing:
        print(f"unmake zine: missing  {line}")
    for url in report.refused:
        print(f"unmake zine: not loaded (no network, project files only): {url}")
    shown = os.path.relpath(report.output)
    sides = f", imposed on {report.sheets} sheet side(s)" if report.sheets else ""
    print(f"unmake zine: {shown}: {report.pages} pages, {report.figures} figures{sides}")
    if report.missing:
        print(f"unmake zine: {len(report.missing)} result(s) are not in the store; their "
              "figures print as 'not generated yet' (`unmake build` makes them)")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    import shlex
    import shutil

    from .render import package_templates

    target = Path(args.directory)
    if target.exists() and any(target.iterdir()):
        raise SystemExit(f"unmake: {target} exists and is not empty; pick a new folder")
    shutil.copytree(package_templates() / "new", target, dirs_exist_ok=True)
    (target / "gitignore").rename(target / ".gitignore")
    where = shlex.quote(str(target))
    print(f"unmake: a new zine in {target}/. Next:\n"
          f"  cd {where}\n"
          "  unmake build      # makes the images of investigations/index.md, builds site/\n"
          "  unmake serve      # preview at http://127.0.0.1:8000, rebuilt as you write\n"
          "Then edit investigations/index.md: every ```generate block becomes a figure.")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    args = _parser().parse_args(argv)
    # mkdocs (and unmake, which logs under it) speak at INFO; libraries that log to the root
    # logger at INFO (open_clip prints every step of a model load) stay quiet
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-7s -  %(message)s")
    logging.getLogger("mkdocs").setLevel(logging.INFO)
    from mkdocs.exceptions import Abort, ConfigurationError, PluginError

    from .errors import UnmakeError

    try:
        return int(globals()[f"cmd_{args.command}"](args))
    except (ConfigurationError, PluginError, UnmakeError) as exc:  # one line, no traceback
        text = str(exc)
        print(text if text.startswith("unmake") else f"unmake: {text}", file=sys.stderr)
    except Abort:
        pass  # mkdocs has already logged the one-line reason
    except KeyboardInterrupt:
        print("unmake: interrupted; finished results are kept in the store", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
