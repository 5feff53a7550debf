"""What every command line of the project shares: a user's mistake as one clear line, a bug
with its traceback.

A mistake of the user (a wrong shape, an unknown mode, a missing file, an invalid configuration)
gets one line saying what was wrong and what to do, and exit status 2. Anything else is a bug of
the kit: its traceback, a line asking to report it, and exit status 1. ``TTSNN_DEBUG=1`` shows
the traceback of user mistakes too.

What counts as a user mistake (:func:`is_user_error`):

- :class:`UserError` and its subclasses: the precise type. Every check of the kit that is about
  what the user gave (a configuration, a file, a command-line argument, an argument of a public
  function) raises it: ``gen.config.ConfigError`` (an invalid hardware configuration) and
  :class:`MissingFileError` (a named file that is not there) are UserErrors.
- an ``OSError`` about a file (missing, a directory, no permission, disk full, out of memory via
  :func:`out_of_memory_is_a_clear_error`): what the user named could not be read or written.

Everything else is a bug, including a ``ValueError`` raised by the kit's own internal checks
(a consistency check of values the kit computed: those keep ``ValueError`` and show their
traceback) and any ``ValueError``/``KeyError`` from numpy, torch or a ``dict[key]`` lookup.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from contextlib import contextmanager
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


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake of the user (one line) rather than a bug (a traceback)."""
    if isinstance(exc, UserError):
        return True
    return isinstance(exc, OSError) and exc.errno in _FILE_ERRNOS


# how the user called the command line, for usage lines: None for the ``python -m`` forms (each
# parser names its own), "ttsnn" or "ttsnn cosim" when the ttsnn console script dispatched
_CALLED_AS: str | None = None


def prog_name(python_m_form: str) -> str:
    """The program name a parser shows in its usage line: ``python_m_form`` (``python -m cosim``)
    when run that way, what the user typed (``ttsnn``, ``ttsnn cosim``) when ``ttsnn`` ran it."""
    return _CALLED_AS or python_m_form


@contextmanager
def called_as(prog: str) -> Iterator[None]:
    """Within the block, :func:`prog_name` answers ``prog`` (``ttsnn`` sets it per command)."""
    global _CALLED_AS
    saved, _CALLED_AS = _CALLED_AS, prog
    try:
        yield
    finally:
        _CALLED_AS = saved


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
