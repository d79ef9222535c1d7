"""unmake: a critical zine builder.

Markdown essays hold *directives* (fenced blocks with a YAML body). A build plans every directive
of the whole site into atomic jobs, runs the missing ones, keeps the results in a content-addressed
store and renders them into an mkdocs site.

Data flow (one module, one job):

    directives.py  find fences, parse YAML, validate into typed specs
    kinds/         one module a directive kind (parse, expand into jobs, render), one registry
    plan.py        expand specs into keyed jobs; look each key up in the store
    execute.py     run what is missing, grouped by model, through the runners in backends/
    store.py       content-addressed artifacts + immutable JSON records, written atomically
    render.py      results -> HTML fragments through Jinja2 templates (templates/)
    plugin.py      the mkdocs plugin that drives it all inside a build; cli.py the command line

    datasets.py    LAION-style Parquet through DuckDB: config, fingerprints, the `dataset` runner
    modelfacts.py  a model's own files read without loading weights: the `ecosystem` runner

Layers: errors/keys/log are leaves; specs, directives, store, plan, render, datasets, modelfacts,
execute, models and kinds/ are pure Python (no torch at import); backends/ is the only home of
torch, diffusers and open_clip, imported lazily.
"""

__version__ = "0.1.0"
