"""The types every layer shares: jobs, plans, the planning context, directive kinds.

A module of its own, not inside a pipeline step, so that `plan`, `execute`, `render`, the kinds
and the backends all import it and none of them imports another for its types (that is how
import circles start). Leaf imports only: errors, keys, models, store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .keys import job_key
from .models import Resolver
from .store import Store

if TYPE_CHECKING:
    from .directives import Directive
    from .render import PageRender
    from .specs import Body


class Spec(Protocol):
    """What every directive's typed spec offers: its anchor and caption (both optional)."""

    @property
    def id(self) -> str | None: ...

    @property
    def caption(self) -> str | None: ...


@dataclass
class Context:
    """What specs and planners may consult: the project, its config, its models and store."""

    root: Path  # folder of mkdocs.yml
    docs_dir: Path
    resolver: Resolver
    store: Store
    config: dict[str, Any] = field(default_factory=dict)  # the unmake plugin config
    cache: dict[str, Any] = field(default_factory=dict)  # per-build memo for kinds (e.g. datasets)
    # figures planned so far, by id: a consumer (`of: id`) finds its upstream jobs here, because
    # planning expands directives in dependency order
    figures: dict[str, Planned] = field(default_factory=dict)

    def upstream(self, figure_id: str) -> Planned:
        """The planned figure a consumer refers to (planning guarantees it is expanded)."""
        return self.figures[figure_id]


@dataclass
class Job:
    """One atomic unit of work: one image, one lookup, one fact sheet, one measurement."""

    type: str  # runner name, e.g. "generate.image"
    inputs: dict[str, Any]  # everything that can change the result; hashed into the key
    group: tuple[Any, ...] = ()  # jobs of one group run together (one model load)
    run: dict[str, Any] = field(default_factory=dict)  # how to run it (not hashed)
    origins: list[str] = field(default_factory=list)  # file:line of every directive asking
    needs: tuple[str, ...] = ()  # keys of upstream jobs whose results this one reads
    key: str = ""

    def __post_init__(self) -> None:
        # upstream keys are inputs: a new upstream result means a new key for its consumers
        if self.needs and "needs" not in self.inputs:
            self.inputs = {**self.inputs, "needs": list(self.needs)}
        self.key = self.key or job_key(self.type, self.inputs)

    def describe(self) -> dict[str, Any]:
        """The part of a job that goes into its stored record."""
        return {"type": self.type, "inputs": self.inputs, "run": self.run}


@dataclass
class Planned:
    """A directive of a page with its spec and the jobs it expands to, in order."""

    directive: Directive
    jobs: list[Job]
    upstream: list[Planned] = field(default_factory=list)  # the figures it reads (`of:`)


@dataclass(frozen=True)
class Output:
    """One result of a figure that other directives may consume: the job that makes it, and the
    label of each of the figure's axes for it ({"prompt": "doctor", "seed": "seed 3"})."""

    job: Job
    axes: dict[str, str]


@dataclass
class Plan:
    pages: dict[str, list[Planned]]  # page src path -> its directives
    jobs: dict[str, Job]  # key -> job, deduplicated across the site
    cached: set[str]
    missing: list[Job]

    def summary(self) -> str:
        n = len(self.jobs)
        return f"{n} job{'s' * (n != 1)}: {len(self.cached)} cached, {len(self.missing)} to run"

    def missing_by_group(self) -> dict[tuple[Any, ...], list[Job]]:
        """Missing jobs by (type, *group, level), upstream groups first: a group comes after
        every group holding a job it needs. The level (how many needs deep) is part of the key:
        the same type and group can sit at two depths (a palette of generated images and one
        of images made from them), and must then run as two groups, in order."""
        depth: dict[str, int] = {}

        def level(job: Job) -> int:
            if job.key not in depth:
                depth[job.key] = 0  # guards against a cycle the planner already refused
                depth[job.key] = 1 + max((level(self.jobs[k]) for k in job.needs
                                          if k in self.jobs), default=-1)
            return depth[job.key]

        groups: dict[tuple[Any, ...], list[Job]] = {}
        for job in sorted(self.missing, key=level):
            groups.setdefault((job.type, *job.group, level(job)), []).append(job)
        return groups


@dataclass(frozen=True)
class Setting:
    """One key of a kind's section of the plugin config, for validation and the README."""

    name: str
    type: type
    default: Any
    doc: str


@dataclass(frozen=True)
class Kind:
    """A directive kind: everything about it, so nothing outside it guesses at its keys."""

    name: str
    parse: Callable[[Body, Context], Any]  # YAML body -> typed spec (raises DirectiveError)
    # spec, context -> atomic jobs; a consumer (`consumes` not empty) also gets its upstream
    # figures, already expanded: expand(spec, ctx, upstream)
    expand: Callable[..., list[Job]]
    render: Callable[[Planned, PageRender], str]  # stored results -> HTML fragment
    runners: dict[str, str] = field(default_factory=dict)  # job type -> "module:function"
    doc: str = ""
    # what other directives may consume with `of:` ("images"), or None; and the figure's
    # outputs with their axis labels, for a consumer's planning and rendering
    produces: str | None = None
    outputs: Callable[[Planned], list[Output]] | None = None
    # what this kind consumes with `of:` (empty: it takes no `of:`)
    consumes: tuple[str, ...] = ()
    of_required: bool = True  # False: `of:` may be left out (`neighbors` takes `query:` instead)
    settings: tuple[Setting, ...] = ()  # its section of the plugin config
    # how a job names itself in `unmake plan` and --frozen reports: (what it runs on, e.g. the
    # model alias, used to group the plan; what it is, one line)
    describe: Callable[[Job], tuple[str, str]] | None = None

    def job_line(self, job: Job) -> tuple[str, str]:
        return self.describe(job) if self.describe else ("", job.type)
