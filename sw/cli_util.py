"""What every command line of the project shares: a user's mistake as one clear line, a bug
with its traceback.

A mistake of the user (a wrong shape, an unknown mode, a missing file, an invalid configuration)
gets one line saying what was wrong and what to do, and exit status 2. Anything else is a bug of
the kit: its traceback, a line asking to report it, and exit status 1. ``TTSNN_DEBUG=1`` shows
the traceback of user mistakes too.

What counts as a user mistake (:func:`is_user_error`):

- :class:`UserError` (and ``gen.config.ConfigError``): the precise type; new checks raise it.
- an ``OSError`` about a file (missing, a directory, no permission, disk full, out of memory via
  :func:`out_of_memory_is_a_clear_error`): what the user named could not be read or written.
- a ``ValueError``/``KeyError``/``OSError`` raised by an explicit ``raise`` statement in the
  kit's own modules (sw/, gen/, cosim/, model/). The kit has some 585 such validation sites that
  predate :class:`UserError`; they are deliberate checks with a message for the user, so they
  count as user mistakes until they are moved to :class:`UserError`. The same types raised
  anywhere else (numpy, torch, a ``dict[key]`` lookup, ``int("x")`` in kit code) are bugs.
"""

from __future__ import annotations

import errno
import linecache
import os
import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence


class UserError(ValueError):
    """A mistake of the user, with a message that says what was wrong and what to do.

    A ``ValueError`` so that callers and tests that catch ``ValueError`` keep working."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a step the user skipped writes) is not there;
    the message says which and how to make it. A ``FileNotFoundError`` too, for callers that
    catch that."""


# what the user named could not be read or written: their mistake (or their machine's), not a bug
_FILE_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                errno.EEXIST, errno.ENOSPC, errno.EROFS, errno.ENOMEM, errno.ENAMETOOLONG,
                errno.ENOTEMPTY}
_KIT_ROOT = Path(__file__).resolve().parent.parent
_KIT_PACKAGES = ("sw", "gen", "cosim", "model")


def _raised_by_a_kit_check(exc: BaseException) -> bool:
    """True if ``exc`` was raised by a ``raise`` statement in the kit's own modules (a deliberate
    check), not by a library or by an operation inside kit code (``d[key]``, ``int(text)``)."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    try:
        rel = Path(filename).resolve().relative_to(_KIT_ROOT)
    except ValueError:
        return False
    if not rel.parts or rel.parts[0] not in _KIT_PACKAGES:
        return False
    return linecache.getline(filename, tb.tb_lineno).lstrip().startswith("raise")


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake of the user (one line) rather than a bug (a traceback)."""
    if isinstance(exc, UserError):
        return True
    config = sys.modules.get("gen.config")
    if config is not None and isinstance(exc, getattr(config, "ConfigError", ())):
        return True
    if isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS:
        return True
    return isinstance(exc, (ValueError, KeyError, OSError)) and _raised_by_a_kit_check(exc)


REPORT_LINE = ("this is a bug in the kit, not a mistake in what you asked: please report it "
               "with the command line and the traceback above")


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
            prog: str = "") -> int:
    """Run a CLI's ``main``: a user mistake prints one line and returns 2; any other exception
    prints its traceback and :data:`REPORT_LINE` and returns 1."""
    name = f"{prog}: " if prog else ""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{name}interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`ttsnn --help | head`): not an error of anyone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # noqa: BLE001 - the one place that sorts mistakes from bugs
        if is_user_error(exc) and not os.environ.get("TTSNN_DEBUG"):
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"{name}error: {msg}", file=sys.stderr)
            return 2
        traceback.print_exc()
        if not is_user_error(exc):
            print(f"{name}internal error: {REPORT_LINE}", file=sys.stderr)
        return 2 if is_user_error(exc) else 1


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
