"""Error types: one line for the author, naming file, line, directive and key."""

from __future__ import annotations


class UnmakeError(Exception):
    """A problem the author must fix; printed as one line, never with a traceback."""


class ConfigError(UnmakeError):
    """A broken `unmake` plugin config in mkdocs.yml."""


class DirectiveError(UnmakeError):
    """A directive that cannot be parsed or validated.

    The message reads `file:line: kind: 'key' problem`, so editors can jump to the place.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        kind: str | None = None,
        key: str | None = None,
    ) -> None:
        self.file, self.line, self.kind, self.key, self.detail = file, line, kind, key, message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else ""
        what = f"{self.kind}: " if self.kind else ""
        key = f"'{self.key}' " if self.key else ""
        return f"{where}{what}{key}{self.detail}"

    def located(self, file: str, line: int, kind: str | None = None) -> DirectiveError:
        """The same error with the place filled in (line is absolute in the file)."""
        return DirectiveError(
            self.detail,
            file=file,
            line=line if self.line is None else self.line,
            kind=self.kind or kind,
            key=self.key,
        )


class ModelNotFound(UnmakeError):
    """A model alias or reference that resolves to nothing on this machine."""


class FrozenMissing(UnmakeError):
    """A `--frozen` build found jobs that are not in the store."""
