"""Jinja2 templates and stylesheet of unmake, shipped as `generator.templates`.

A zine overrides any of them by file name in its own templates/ folder.
"""
