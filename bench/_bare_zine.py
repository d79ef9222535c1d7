"""The bare side of bench_zine.py: WeasyPrint alone, printing a zine.html kept by
`unmake zine --html DIR` with the same stylesheets, in the order unmake gives them.

Run: python bench/_bare_zine.py DIR OUT.pdf
"""

import sys
from pathlib import Path

from weasyprint import CSS, HTML

kept, out = Path(sys.argv[1]), Path(sys.argv[2])
sheets = [CSS(filename=str(kept / name)) for name in ("unmake.css", "print.css", "page.css")]
HTML(filename=str(kept / "zine.html"), base_url=(kept / "site").as_uri() + "/").write_pdf(
    out, stylesheets=sheets)
