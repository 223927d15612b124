"""The CLI's exit codes and its output (client/cli.py, client/batch_cli.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_JOB_FAILED = 5
EXIT_TIMEOUT = 6
EXIT_SERVER = 7


class Output:
    """Human text on stdout, progress and errors on stderr; with --json only JSON documents on stdout."""

    def __init__(self, as_json: bool, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.as_json = as_json
        # Resolved now, not at import, so a caller (or pytest) that swapped sys.stdout/stderr is honoured.
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def emit(self, document: Any, human: Callable[[], str]) -> None:
        if self.as_json:
            print(json.dumps(document, indent=2), file=self.out)
        else:
            print(human(), file=self.out)

    def note(self, line: str) -> None:
        print(line, file=self.err, flush=True)
