"""The one error type for the user's mistakes. The CLI prints it as one line (what is wrong, where, what
to do) and exits 2; anything else is the engine's bug and keeps its traceback."""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: bad params, bad input, a stage run out of order."""


class ParamsError(UserError, ValueError):
    """params.yaml (or a command-line value) is wrong: `params.yaml: path.to.key: reason`."""


class InputError(UserError, ValueError):
    """Bad input, located: file, line and field (a question source, an import, a held-out problem file)."""

    def __init__(self, file: str, line: int | None, field: str | None, reason: str, raw: str = ""):
        self.file, self.line, self.field, self.reason, self.raw = file, line, field, reason, raw
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {'field ' + repr(field) + ': ' if field else ''}{reason}")


class StageError(UserError, RuntimeError):
    """A stage cannot go on for a reason the user can fix (an input missing or out of step, a model
    folder not built, a server that does not answer)."""
