"""Word-level diff of two prompts, for `trail`: what a revision inserted, deleted and kept.

Pure Python (difflib), no markup: `diff_words` returns runs of ("equal" | "insert" | "delete",
text), and the template marks them up. A word is a run of letters and digits (with inner
apostrophes or hyphens: "don't", "well-lit"); every other non-space character is a token of its
own, so a changed comma is a change of one token. Whitespace is not compared: "a  fox" and
"a fox" are the same prompt here, and each run shows the spacing of the text it comes from.
A deletion next to an insertion (a replacement) is shown deletion first, then insertion, the
order of git's `--word-diff`, whose plain markers `plain()` also writes: `[-old-]{+new+}`.
"""

from __future__ import annotations

import difflib
import re
from typing import NamedTuple

_TOKEN = re.compile(r"(\s*)(\w+(?:['’-]\w+)*|[^\w\s])")


class Token(NamedTuple):
    space: str  # the whitespace before it, as written
    text: str


class Run(NamedTuple):
    op: str  # "equal", "insert" or "delete"
    text: str


def tokens(text: str) -> list[Token]:
    """The words and punctuation of `text`, each with the whitespace written before it."""
    return [Token(m.group(1), m.group(2)) for m in _TOKEN.finditer(text)]


def diff_words(old: str, new: str) -> list[Run]:
    """The runs that turn `old` into `new`, word by word; consecutive runs of one kind merged.

    Joining the "equal" and "insert" runs gives `new` (up to whitespace); joining "equal" and
    "delete" gives `old`, likewise."""
    a, b = tokens(old), tokens(new)
    # autojunk off: in a short prompt a repeated "a" is a word, not noise
    matcher = difflib.SequenceMatcher(None, [t.text for t in a], [t.text for t in b],
                                      autojunk=False)
    runs: list[Run] = []

    def emit(op: str, text: str) -> None:
        if not text:
            return
        if runs and runs[-1].op == op:
            runs[-1] = Run(op, runs[-1].text + text)
        else:
            runs.append(Run(op, text))

    def add(op: str, part: list[Token], lead: str | None = None) -> None:
        """One run: the whitespace before its first token outside it (as plain text), so that
        markers hug the words."""
        if not part:
            return
        space = part[0].space if lead is None else lead
        if runs:  # no leading space at the very start of the prompt
            emit("equal", space)
        emit(op, part[0].text + "".join(t.space + t.text for t in part[1:]))

    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            # at the start of `new` its first word has no space before it; after a deletion
            # the space `old` had there keeps the words apart
            lead = b[j1].space if j1 > 0 else (a[i1].space if i1 > 0 else "")
            add("equal", b[j1:j2], lead if lead or j1 > 0 else "")
        elif tag == "delete":
            add("delete", a[i1:i2])
        elif tag == "insert":
            add("insert", b[j1:j2], b[j1].space if runs else "")
        else:  # replace: the deletion, then the insertion right after it
            add("delete", a[i1:i2])
            emit("insert", b[j1].text + "".join(t.space + t.text for t in b[j1 + 1:j2]))
    return runs


def plain(runs: list[Run]) -> str:
    """The runs as plain text with git's word-diff markers: `[-deleted-]`, `{+inserted+}`."""
    marks = {"equal": ("", ""), "insert": ("{+", "+}"), "delete": ("[-", "-]")}
    return "".join(marks[r.op][0] + r.text + marks[r.op][1] for r in runs)


def changed(runs: list[Run]) -> bool:
    return any(r.op != "equal" for r in runs)
