"""Ctrl-C that is never lost in a finaliser.

Python raises ``KeyboardInterrupt`` in whatever Python code the main thread runs when the signal arrives. If that is
a finaliser (a ``__del__`` method, a ``weakref`` callback such as ``WeakValueDictionary``'s ``remove``, which torch
and numba caches run all the time), the interpreter cannot propagate the exception: it prints "Exception ignored
in ..." with a traceback, drops it, and the job goes on as if Ctrl-C had never been pressed (seen in suite runs of
``latticekit run``). :func:`finaliser_safe_sigint` installs a handler that raises the interrupt as usual, except in
a finaliser, where it re-sends the signal a moment later, when the finaliser has returned.

Example
-------
>>> from latticekit.app.interrupt import finaliser_safe_sigint
>>> with finaliser_safe_sigint():
...     pass
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import types
import weakref
from typing import Iterator

__all__ = ["RESEND_DELAY_S", "finaliser_safe_sigint", "in_finaliser"]

# seconds until a deferred interrupt is sent again: finalisers are short (a dictionary removal, a file close)
RESEND_DELAY_S = 0.05

_WEAKREF_FILE = os.path.normcase(os.path.abspath(weakref.__file__))


def in_finaliser(frame: types.FrameType | None) -> bool:
    """Whether ``frame`` (the frame a signal handler interrupted) or one of its callers runs a finaliser: a
    ``__del__`` method or code of the standard ``weakref`` module (its dictionaries' removal callbacks and
    ``weakref.finalize``), where an exception cannot propagate."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__":
            return True
        if os.path.normcase(os.path.abspath(code.co_filename)) == _WEAKREF_FILE:
            return True
        frame = frame.f_back
    return False


# timers of interrupts deferred inside the current block (each cancelled when the block ends)
_deferred: list[threading.Timer] = []


def _handler(signum: int, frame: types.FrameType | None) -> None:
    if in_finaliser(frame):
        # re-send from a timer thread: the signal is handled again by the main thread once the finaliser has
        # returned (Python runs signal handlers in the main thread only)
        timer = threading.Timer(RESEND_DELAY_S, os.kill, args=(os.getpid(), signum))
        timer.daemon = True
        _deferred.append(timer)
        timer.start()
        return
    _cancel_deferred()
    raise KeyboardInterrupt


def _cancel_deferred() -> bool:
    """Cancel the deferred interrupts; whether there were any."""
    pending = bool(_deferred)
    while _deferred:
        _deferred.pop().cancel()
    return pending


@contextlib.contextmanager
def finaliser_safe_sigint() -> Iterator[None]:
    """Within the block, SIGINT raises ``KeyboardInterrupt`` except inside a finaliser, where it is deferred
    (:func:`in_finaliser`) and raised a moment later, or at the latest when the block ends. The previous handler
    is restored on exit. Outside the main thread, or where SIGINT is ignored (a process started in the background
    by a shell without job control), nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, _handler)
    try:
        yield
    except BaseException:
        _cancel_deferred()   # the exception that ends the block wins
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    # an interrupt deferred in the block's last moments is the user's too: raised here, not after the block
    if _cancel_deferred():
        raise KeyboardInterrupt
