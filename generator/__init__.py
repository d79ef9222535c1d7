"""unmake: a critical zine builder.

Markdown essays hold *directives* (fenced blocks with a YAML body). A build plans every directive
of the whole site into atomic jobs, runs the missing ones, keeps the results in a content-addressed
store and renders them into an mkdocs site.

Data flow (one module, one job):

    directives.py  find fences, parse YAML, validate into typed specs (near-miss fences warn)
    kinds/         one module a directive kind (parse, expand into jobs, render, its config
                   section, how its jobs describe themselves), one registry (kinds/__init__.py)
    plan.py        two passes: parse every page (site-wide ids), then expand in dependency order
                   (`of:` references); key each job; look each key up in the store
    execute.py     run what is missing, upstream groups first, through the runners in backends/
                   and instruments/; a failed upstream job fails its consumers visibly
    store.py       content-addressed artifacts + immutable JSON records + memos, written
                   atomically; StoreView is the read-only view runners get
    render.py      results -> HTML fragments through Jinja2 templates (templates/)
    plugin.py      the mkdocs plugin that drives it all inside a build (and builds beside site/,
                   swapping the new site in only on success); cli.py the command line

    types.py       the shared types: Job, Plan, Planned, Output, Context, Kind, Setting, Spec
    models.py      diffusion model aliases, folders, HF cache entries and their fingerprints
    clipmodels.py  CLIP model aliases (`clip_models`) and their fingerprints
    datasets/      LAION-style Parquet: config and conditions, registry and fingerprints, SQL
    modelfacts.py  a model's own files read without loading weights: the `ecosystem` runner
    instruments/   the `measure` directive's instruments (zeroshot, palette, faces, diversity),
                   one module each, one registry
    a1111.py       AUTOMATIC1111-style PNG `parameters` text; sheets.py labelled contact sheets
    colour.py      sRGB <-> CIELAB; stats.py Wilson intervals and the Vendi score

Layers: errors/keys/log are leaves; types is imported by every layer and imports no pipeline
step; everything outside backends/ is pure Python at import (no torch); backends/ is the only
home of torch, diffusers, open_clip (and DuckDB's runner), imported lazily when jobs run.
"""

__version__ = "0.1.0"
