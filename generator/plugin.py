"""The mkdocs plugin `unmake`: plan the whole site, run what is missing, render into pages.

Hook order in one build: on_startup (which command) -> on_config (config, store, models; the
site is redirected to a fresh folder beside site_dir) -> on_files (read every page, plan the
site, run missing jobs) -> on_page_markdown (swap each directive for a placeholder that carries
the figure's anchor, so mkdocs' link validation knows it) -> on_page_content (swap placeholders
for rendered HTML, after Markdown so our HTML is left alone) -> on_post_build, last of all
plugins (publish images; fail if any job failed; else swap the new site into site_dir) ->
on_build_error (remove the half-built folder).

A build that fails at any point leaves the previous site_dir exactly as it was: mkdocs cleans
site_dir before any plugin sees a page, so the plugin has mkdocs build somewhere else and moves
the result into place only when the whole build succeeded (`mkdocs build` and `unmake build`
alike; `serve` builds into its own temporary folder and is left alone).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, event_priority
from mkdocs.utils import get_relative_url

from . import citations, performance
from . import directives as dirs
from .errors import UnmakeError
from .execute import execute, run_options
from .log import log
from .models import Resolver, env_overrides
from .plan import plan_site
from .render import PageRender, Renderer, package_templates
from .store import Store, link_or_copy
from .types import Context, Plan

MODES = ("auto", "frozen", "force", "off")
_SLOT = re.compile(r'<div class="unmake-slot" data-unmake="(\d+)"(?: id="[^"]*")?></div>')


class _CoreConfig(base.Config):
    store = c.Type(str, default=".unmake")
    # auto: run what is missing; frozen: run nothing, fail on anything missing;
    # force: run everything again; off: run nothing, show what is missing as such (fast preview)
    mode = c.Choice(MODES, default="auto")
    batch_size = c.Type(int, default=4)
    device = c.Type(str, default="auto")
    templates = c.Type(str, default="templates")
    models = c.Type(dict, default={})
    # where runner calls run: here, or on Ray actors (`pip install 'unmake[ray]'`)
    executor = c.Choice(("local", "ray"), default="local")
    ray = c.Type(dict, default={})
    # citations (generator/citations.py): a BibTeX file relative to mkdocs.yml, and a CSL style
    bibliography = c.Type(str, default="")
    citation_style = c.Type(str, default="harvard-cite-them-right")
    zine = c.Type(dict, default={})  # the print zine's cover and plates (generator/zine.py)


def _kind_settings() -> dict[str, Any]:
    """Each directive kind's own section of the plugin config (typed, like the core's)."""
    from .kinds import KINDS

    return {s.name: c.Type(s.type, default=s.default)
            for kind in KINDS.values() for s in kind.settings}


# The plugin config: the core's keys plus every kind's settings (kinds own their sections).
UnmakeConfig = type("UnmakeConfig", (_CoreConfig,), _kind_settings())


class UnmakePlugin(BasePlugin[_CoreConfig]):
    """Set by the CLI before a build: mode and model aliases from the command line."""

    config_class = UnmakeConfig  # the core's keys, typed for mypy, plus the kinds' sections
    cli_mode: str | None = None
    cli_models: dict[str, str] | None = None
    cli_executor: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.plan: Plan | None = None
        self.failures: dict[str, str] = {}
        self.slots: dict[str, list[str]] = {}
        self.command: str | None = None  # build | gh-deploy | serve (None: called as a library)
        self.dirty = False
        self.final_site: Path | None = None  # where the site goes when the build succeeds
        self.building: Path | None = None  # where it is being built meanwhile
        self.warnings: _Counter | None = None
        self.bib: citations.Bibliography | None = None  # the config's `bibliography`, if any
        # every citation group of the site, page by page (the print zine lists them all once);
        # the zine sets page_references False: no list at the end of each page
        self.cited: list[tuple[citations.Item, ...]] = []
        self.page_references = True

    def on_startup(self, *, command: str, dirty: bool) -> None:
        self.command, self.dirty = command, dirty

    @property
    def mode(self) -> str:
        mode = self.cli_mode or os.environ.get("UNMAKE_MODE") or self.config.mode
        if mode not in MODES:
            raise PluginError(f"unmake: mode must be one of {', '.join(MODES)}, got {mode!r}")
        return mode

    # -- hooks ---------------------------------------------------------------------------------
    def on_config(self, config: Any) -> Any:
        root = Path(config.config_file_path or ".").resolve().parent
        for name, ref in self.config.models.items():
            if not isinstance(ref, str) or not ref:
                raise PluginError(f"{config.config_file_path}: plugins.unmake.models.{name}: "
                                  f"must be 'tiny', a folder or an org/repo id, got {ref!r}")
        if self.config.batch_size < 1:
            raise PluginError(f"{config.config_file_path}: plugins.unmake.batch_size: "
                              f"must be ≥ 1, got {self.config.batch_size}")
        try:  # the pipeline options of `generate` (generator/performance.py)
            performance.check(dict(self.config))
        except UnmakeError as exc:
            raise PluginError(f"{config.config_file_path}: {exc}") from None
        store = Store(root / self.config.store)
        aliases = {"default": "tiny", **self.config.models, **env_overrides(),
                   **(self.cli_models or {})}
        resolver = Resolver(aliases, root, memo=store.memo("fingerprints"),
                            frozen=self.mode in ("frozen", "off"))
        self.ctx = Context(root, Path(config.docs_dir), resolver, store, dict(self.config))
        self.docs_shown = os.path.relpath(config.docs_dir, root)
        try:
            self.bib = citations.load(dict(self.config), root, self.ctx.cache)
        except UnmakeError as exc:
            raise PluginError(str(exc)) from None
        if "assets/unmake/unmake.css" not in config.extra_css:
            config.extra_css.append("assets/unmake/unmake.css")
        # the grid explorer (figures of three or more axes); pages read fine without it
        if "assets/unmake/unmake.js" not in [str(s) for s in config.extra_javascript]:
            config.extra_javascript.append("assets/unmake/unmake.js")
        self._build_beside(config)
        return config

    def _build_beside(self, config: Any) -> None:
        """Point mkdocs at a fresh folder beside site_dir; on_post_build moves it into place."""
        self.final_site = self.building = None
        # serve builds in a folder of its own, plan builds nothing, and a dirty build adds to
        # site_dir in place, as mkdocs means it to
        if self.command in ("serve", "plan") or self.dirty:
            return
        final = Path(config.site_dir).resolve()
        building = final.parent / f".{final.name}.unmake-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)  # a leftover of a killed build of this pid
        self.final_site, self.building = final, building
        config.site_dir = str(building)
        _say_final_site(final, building)
        # mkdocs counts --strict warnings after on_post_build: count them here too, so a build
        # that strict mode will abort is never moved into place
        if self.warnings:
            logging.getLogger("mkdocs").removeHandler(self.warnings)
        self.warnings = _Counter() if config.strict else None
        if self.warnings:
            logging.getLogger("mkdocs").addHandler(self.warnings)

    def make_plan(self, files: Any) -> Plan:
        """Plan every Markdown page of the site (raises PluginError with file:line on bad input)."""
        pages = {}
        try:
            for file in files.documentation_pages():
                shown = self._shown_page(file)
                pages[file.src_uri] = (shown, dirs.read_page(Path(file.abs_src_path), shown))
                citations.check_page(pages[file.src_uri][1], shown, self.bib)
            plan = plan_site(pages, self.ctx, force=self.mode == "force")
            for planned in (p for page in plan.pages.values() for p in page):  # captions cite
                caption = getattr(planned.directive.spec, "caption", None)
                if isinstance(caption, str) and "[@" in caption:
                    d = planned.directive
                    citations.check_caption(caption, d.file, d.key_lines.get("caption", d.line),
                                            self.bib)
            return plan
        except UnmakeError as exc:
            raise PluginError(str(exc)) from None

    def on_files(self, files: Any, config: Any) -> Any:
        self.plan = plan = self.make_plan(files)
        self.cited = []
        mode = self.mode
        if mode == "frozen" and plan.missing:
            raise PluginError(frozen_report(plan))
        if mode in ("auto", "force"):
            options = run_options(dict(self.config))
            options["executor"] = self.cli_executor or options["executor"]
            try:
                self.failures = execute(plan, self.ctx.store, options)
            except UnmakeError as exc:  # e.g. `executor: ray` without Ray, or a bad `ray:`
                raise PluginError(str(exc)) from None
        else:
            log.info("unmake: %s (mode %s: nothing runs)", plan.summary(), mode)
        shown = {key: public_text(message, self.ctx.root)
                 for key, message in self.failures.items()}
        self.renderer = Renderer(self.ctx.store, self.ctx.root / self.config.templates, shown)
        for file in files.documentation_pages():
            self.renderer.page_urls[self._shown_page(file)] = file.url
        return files

    def _shown_page(self, file: Any) -> str:
        """A page's path as directives name it (relative to mkdocs.yml)."""
        return os.path.normpath(os.path.join(self.docs_shown, file.src_uri))

    def on_page_markdown(self, markdown: str, page: Any, config: Any, files: Any) -> str:
        cites = self.bib.page() if self.bib else None
        return self._cite(self._directives(markdown, page, cites), page, cites)

    def _cite(self, markdown: str, page: Any, cites: citations.PageCitations | None) -> str:
        """Citations (checked while planning) become links; the references list goes last."""
        if cites is None:
            return markdown
        found = citations.find(markdown, page.file.src_uri)
        markdown = citations.substitute(markdown, found, cites)
        html, references = cites.resolve()
        slots = self.slots.get(page.file.src_uri)
        if slots:  # figures cite too (actors' sources)
            self.slots[page.file.src_uri] = [citations.fill(slot, html) for slot in slots]
        markdown = citations.fill(markdown, html)
        self.cited.extend(cites.groups)
        if references and self.page_references:
            markdown += f"\n\n## References\n\n{references}\n"
        return markdown

    def _directives(self, markdown: str, page: Any,
                    cites: citations.PageCitations | None) -> str:
        assert self.plan is not None
        planned = self.plan.pages.get(page.file.src_uri, [])
        if not planned:
            return markdown
        from .kinds import KINDS

        found = dirs.find(markdown, page.file.src_uri, set(KINDS))
        if len(found) != len(planned):  # another plugin rewrote the page's directives
            raise PluginError(f"{planned[0].directive.file}: directives changed during the build")
        lines = markdown.splitlines()
        view = PageRender(self.renderer, lambda path: get_relative_url(path, page.url), page.url)
        view.citations = cites
        slots: list[str] = []
        for item in planned:  # in page order, so figures are numbered as they appear
            try:
                slots.append(KINDS[item.directive.kind].render(item, view))
            except UnmakeError as exc:
                raise PluginError(str(exc)) from None
        for number, spot in reversed(list(enumerate(found))):  # from the end: lines stay valid
            # the placeholder carries the figure's anchor, so links to `#id` validate
            anchor = getattr(planned[number].directive.spec, "id", None)
            attr = f' id="{anchor}"' if anchor else ""
            placeholder = f'\n<div class="unmake-slot" data-unmake="{number}"{attr}></div>\n'
            lines[spot.line - 1 : spot.end] = [placeholder]
        self.slots[page.file.src_uri] = slots
        return "\n".join(lines)

    # after other plugins (glightbox wraps bare <img>; ours are already wrapped)
    @event_priority(-50)
    def on_page_content(self, html: str, page: Any, config: Any, files: Any) -> str:
        slots = self.slots.pop(page.file.src_uri, None)
        if not slots:
            return html
        return _SLOT.sub(lambda m: slots[int(m.group(1))], html)

    # last of all plugins: search and others write into the site folder in their on_post_build
    @event_priority(-100)
    def on_post_build(self, config: Any) -> None:
        site = Path(config.site_dir)
        for asset in ("unmake.css", "unmake.js"):
            link_or_copy(package_templates() / asset, site / "assets/unmake" / asset)
        for path, source in self.renderer.assets.items():
            link_or_copy(source, site / path)
        kept = (f"{self._shown(self.final_site)} was left as it was" if self.final_site
                else "the preview shows failure boxes in their place")
        if self.failures:
            assert self.plan is not None
            if self.building and self.final_site:  # keep the failed build to look at
                aside = self.ctx.store.root / "failed-site"
                with self.ctx.store.hold("failed-site"):  # two failing builds, one store
                    shutil.rmtree(aside, ignore_errors=True)
                    aside.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self.building, aside)
                self.building = None
                kept += (f"; this build, with a failure box in each failed figure, is in "
                         f"{self._shown(aside)}")
            lines = sorted(f"  {', '.join(self.plan.jobs[k].origins)}: {msg}"
                           for k, msg in self.failures.items())
            raise PluginError(f"unmake: {len(self.failures)} job(s) failed; {kept}:\n"
                              + "\n".join(lines))
        if self.warnings and self.warnings.count:
            raise PluginError(f"unmake: {self.warnings.count} warning(s) in strict mode; {kept}")
        self._move_into_place(config)

    def on_build_error(self, error: Exception) -> None:
        if self.building:
            shutil.rmtree(self.building, ignore_errors=True)
        self._stop_counting()

    def _move_into_place(self, config: Any) -> None:
        """Swap the finished site into site_dir: two renames, the old one removed after."""
        self._stop_counting()
        if not (self.final_site and self.building):
            return
        final, building = self.final_site, self.building
        old = final.parent / f".{final.name}.unmake-old-{os.getpid()}"
        # two builds finishing at once: one swap at a time, so each leaves a whole site
        with self.ctx.store.hold("site-" + hashlib.sha256(str(final).encode()).hexdigest()[:16]):
            if final.exists():
                os.replace(final, old)
            os.replace(building, final)
        shutil.rmtree(old, ignore_errors=True)
        config.site_dir = str(final)
        self.building = None

    def _stop_counting(self) -> None:
        if self.warnings:
            logging.getLogger("mkdocs").removeHandler(self.warnings)
            self.warnings = None

    def _shown(self, path: Path) -> str:
        try:
            return os.path.relpath(path, self.ctx.root) + "/"
        except ValueError:
            return str(path)


def _say_final_site(final: Path, building: Path) -> None:
    """mkdocs announces the folder it writes to; say the one the site will be in."""
    logger = logging.getLogger("mkdocs.commands.build")
    for old in [f for f in logger.filters if getattr(f, "unmake", False)]:
        logger.removeFilter(old)

    def rewrite(record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and str(building) in record.msg:
            record.msg = record.msg.replace(str(building), str(final))
        return True

    rewrite.unmake = True  # type: ignore[attr-defined]
    logger.addFilter(rewrite)


class _Counter(logging.Handler):
    """Counts warnings (and worse) logged during a build."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


# an absolute path of two or more parts (not the path of a URL): what is left of one after the
# project's and the home folder's are replaced
_ABSOLUTE = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"()<>:,]+/)+([^\s/'\"()<>:,]+)")


def public_text(text: str, root: Path) -> str:
    """A message as a published page may show it: the project's and the home folder's
    absolute paths replaced by `.` and `~`, any other absolute path by `…/` and its last part
    (the console message keeps the whole path)."""
    for path, shown in ((str(root.resolve()), "."), (str(root), "."),
                        (os.path.expanduser("~"), "~")):
        if len(path) > 1:
            text = text.replace(path, shown)
    return _ABSOLUTE.sub(lambda m: f"…/{m.group(1)}", text)


def frozen_report(plan: Plan) -> str:
    """Every job a frozen build lacks, with the page and line that asked for it."""
    lines = [f"unmake: --frozen build, but {len(plan.missing)} of {len(plan.jobs)} results are "
             "not in the store (run `unmake build` where the models and data are):"]
    from .kinds import describe

    for job in plan.missing:
        on, what = describe(job)
        lines.append(f"  {', '.join(job.origins)}: {job.type} {what}"
                     f"{f' ({on})' if on else ''} [{job.key[:12]}]")
    return "\n".join(lines)
