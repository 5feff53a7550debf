"""What every command line of the project shares: user errors as one clear line, not a trace.

A mistake of the user (a wrong shape, an unknown mode, a missing file, an invalid
configuration) raises ``ValueError`` (or a subclass such as ``gen.config.ConfigError``),
``OSError`` (a missing file, an output path that cannot be written) or ``KeyError`` with a message that says what was wrong and what to do.
The CLIs print that message and exit with status 2. ``TTSNN_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Sequence

# OSError covers the file-system mistakes: missing inputs, an --out that is a file, no permission.
USER_ERRORS = (ValueError, OSError, KeyError)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
            prog: str = "") -> int:
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as exc:
        if os.environ.get("TTSNN_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{prog + ': ' if prog else ''}error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog + ': ' if prog else ''}interrupted", file=sys.stderr)
        return 130
