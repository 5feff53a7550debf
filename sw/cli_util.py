"""What every command line of the project shares: user errors as one clear line, not a trace.

A mistake of the user (a wrong shape, an unknown mode, a missing file, an invalid
configuration) raises ``ValueError`` (or a subclass such as ``gen.config.ConfigError``),
``OSError`` (a missing file, an output path that cannot be written) or ``KeyError`` with a message that says what was wrong and what to do.
The CLIs print that message and exit with status 2. ``TTSNN_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

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


_ALLOC = re.compile(r"tried to allocate (\d+) bytes")
# what torch's allocators (CPU, CUDA) and Python say when an allocation is refused
_OOM_TEXTS = ("can't allocate memory", "not enough memory", "out of memory")


@contextmanager
def out_of_memory_is_a_clear_error(where: str | Callable[[], str], advice: str) -> Iterator[None]:
    """Turn an allocator failure inside the block (torch's C++ trace, or ``MemoryError``) into
    one ``OSError`` line: ``out of memory <where> (an allocation of N GiB failed): <advice>``.
    ``where`` may be a function, read when the failure happens (e.g. the current epoch).
    Other errors pass unchanged, with their traceback."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and not any(k in text for k in _OOM_TEXTS):
            raise
        m = _ALLOC.search(text)
        asked = f" (an allocation of {int(m.group(1)) / 2 ** 30:.3g} GiB failed)" if m else ""
        place = where() if callable(where) else where
        err = OSError(f"out of memory {place}{asked}: {advice}")
        err.errno = errno.ENOMEM
        raise err from None
