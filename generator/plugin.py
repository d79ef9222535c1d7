"""The mkdocs plugin `unmake`: plan the whole site, run what is missing, render into pages.

Hook order in one build: on_config (config, store, models) -> on_files (read every page, plan the
site, run missing jobs) -> on_page_markdown (swap each directive for a placeholder) ->
on_page_content (swap placeholders for rendered HTML, after Markdown so our HTML is left alone)
-> on_post_build (publish images and fail the build if any job failed).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.exceptions import PluginError
from mkdocs.plugins import BasePlugin, event_priority
from mkdocs.utils import get_relative_url

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
_SLOT = re.compile(r'<div class="unmake-slot" data-unmake="(\d+)"></div>')


class UnmakeConfig(base.Config):
    store = c.Type(str, default=".unmake")
    # auto: run what is missing; frozen: run nothing, fail on anything missing;
    # force: run everything again; off: run nothing, show what is missing as such (fast preview)
    mode = c.Choice(MODES, default="auto")
    batch_size = c.Type(int, default=4)
    device = c.Type(str, default="auto")
    templates = c.Type(str, default="templates")
    models = c.Type(dict, default={})
    datasets = c.Type(dict, default={})
    filter_chains = c.Type(dict, default={})


class UnmakePlugin(BasePlugin[UnmakeConfig]):
    """Set by the CLI before a build: mode and model aliases from the command line."""

    cli_mode: str | None = None
    cli_models: dict[str, str] | None = None

    def __init__(self) -> None:
        super().__init__()
        self.plan: Plan | None = None
        self.failures: dict[str, str] = {}
        self.slots: dict[str, list[str]] = {}

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
        store = Store(root / self.config.store)
        aliases = {"default": "tiny", **self.config.models, **env_overrides(),
                   **(self.cli_models or {})}
        resolver = Resolver(aliases, root, memo=store.memo("fingerprints"),
                            frozen=self.mode in ("frozen", "off"))
        self.ctx = Context(root, Path(config.docs_dir), resolver, store, dict(self.config))
        self.docs_shown = os.path.relpath(config.docs_dir, root)
        config.extra_css.append("assets/unmake/unmake.css")
        return config

    def make_plan(self, files: Any) -> Plan:
        """Plan every Markdown page of the site (raises PluginError with file:line on bad input)."""
        pages = {}
        for file in files.documentation_pages():
            shown = os.path.normpath(os.path.join(self.docs_shown, file.src_uri))
            pages[file.src_uri] = (shown, Path(file.abs_src_path).read_text("utf-8-sig"))
        try:
            return plan_site(pages, self.ctx, force=self.mode == "force")
        except UnmakeError as exc:
            raise PluginError(str(exc)) from None

    def on_files(self, files: Any, config: Any) -> Any:
        self.plan = plan = self.make_plan(files)
        mode = self.mode
        if mode == "frozen" and plan.missing:
            raise PluginError(frozen_report(plan))
        if mode in ("auto", "force"):
            self.failures = execute(plan, self.ctx.store, run_options(dict(self.config)))
        else:
            log.info("unmake: %s (mode %s: nothing runs)", plan.summary(), mode)
        self.renderer = Renderer(self.ctx.store, self.ctx.root / self.config.templates,
                                 self.failures)
        return files

    def on_page_markdown(self, markdown: str, page: Any, config: Any, files: Any) -> str:
        assert self.plan is not None
        planned = self.plan.pages.get(page.file.src_uri, [])
        if not planned:
            return markdown
        from .kinds import KINDS

        found = dirs.find(markdown, page.file.src_uri, set(KINDS))
        if len(found) != len(planned):  # another plugin rewrote the page's directives
            raise PluginError(f"{planned[0].directive.file}: directives changed during the build")
        lines = markdown.splitlines()
        view = PageRender(self.renderer, lambda path: get_relative_url(path, page.url))
        slots: list[str] = []
        for item in planned:  # in page order, so figures are numbered as they appear
            try:
                slots.append(KINDS[item.directive.kind].render(item, view))
            except UnmakeError as exc:
                raise PluginError(str(exc)) from None
        for number, spot in reversed(list(enumerate(found))):  # from the end: lines stay valid
            placeholder = f'\n<div class="unmake-slot" data-unmake="{number}"></div>\n'
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

    def on_post_build(self, config: Any) -> None:
        site = Path(config.site_dir)
        link_or_copy(package_templates() / "unmake.css", site / "assets/unmake/unmake.css")
        for path, source in self.renderer.assets.items():
            link_or_copy(source, site / path)
        if self.failures:
            assert self.plan is not None
            lines = [f"  {', '.join(self.plan.jobs[k].origins)}: {msg}"
                     for k, msg in sorted(self.failures.items())]
            raise PluginError(f"unmake: {len(self.failures)} job(s) failed; the site was built "
                              "with failure boxes in their place:\n" + "\n".join(lines))


def frozen_report(plan: Plan) -> str:
    """Every job a frozen build lacks, with the page and line that asked for it."""
    lines = [f"unmake: --frozen build, but {len(plan.missing)} of {len(plan.jobs)} results are "
             "not in the store (run `unmake build` where the models and data are):"]
    for job in plan.missing:
        what = f" {job.inputs['prompt']!r}" if "prompt" in job.inputs else ""
        extra = f" seed {job.inputs['seed']}" if "seed" in job.inputs else ""
        lines.append(f"  {', '.join(job.origins)}: {job.type}{what}{extra} [{job.key[:12]}]")
    return "\n".join(lines)
