"""Web domains of dataset URLs: the host pattern and registered domains (public suffix list)."""

from __future__ import annotations

import functools
import re
from typing import Any

# The host of a URL (scheme, optional user info, then the host up to a port, path or query). The
# same pattern runs in DuckDB (sql.host_sql) and here, so facets and samples agree on hosts.
HOST_RE = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^/?#@]*@)?([^/?#:]+)"
_HOST_PY = re.compile(HOST_RE)


@functools.cache
def extractor() -> Any:
    """tldextract on its bundled public suffix list snapshot: no download, no cache folder."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@functools.lru_cache(maxsize=1 << 16)
def registered_domain(host: str) -> str:
    """shutterstock.com for image.shutterstock.com. Under a suffix the list does not know
    (reserved names like .example, intranet names) the last two labels; an IP address whole."""
    host = host.strip().lower().rstrip(".")
    if not host:
        return ""
    ext = extractor()(host)
    if ext.domain and ext.suffix:
        return f"{ext.domain}.{ext.suffix}"
    if re.fullmatch(r"[\d.]+|\[[\da-f:.]+\]", host):
        return host
    return ".".join(host.split(".")[-2:])


def domain_of(url: str | None) -> str:
    """The registered domain of a URL's host, or "" when it has none."""
    match = _HOST_PY.match(url or "")
    return registered_domain(match.group(1)) if match else ""
