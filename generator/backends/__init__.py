"""Backends: the runners that drive heavy libraries, imported only when their jobs run.

`diffusion` (diffusers: the `generate` kind's images), `clip` (open_clip: embeddings and
zero-shot labels), `tiny` (the built-in miniature model), `duckdb_lookup` (DuckDB over Parquet).
The only home of torch, diffusers and open_clip: planning, rendering and a frozen build never
import this package's modules.
"""
