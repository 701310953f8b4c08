"""Ctrl-C inside a finaliser is deferred, not lost (latticekit/app/interrupt.py)."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
import weakref

import pytest

from latticekit.app.interrupt import finaliser_safe_sigint, in_finaliser

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or sys.platform == "win32",
                                reason="POSIX signals (os.kill of SIGINT to this process)")


@pytest.fixture
def default_sigint():
    """A pytest-xdist worker ignores SIGINT; these tests need Python's default handler, as on a command line."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_in_finaliser_sees_del_and_weakref_callbacks() -> None:
    frames = {}

    class WithDel:
        def __del__(self) -> None:
            frames["del"] = in_finaliser(sys._getframe())

    class Target:
        pass

    WithDel()
    gc.collect()
    t = Target()
    d = weakref.WeakValueDictionary({"k": t})
    f = weakref.finalize(t, lambda: frames.__setitem__("finalize", in_finaliser(sys._getframe())))
    del t
    gc.collect()
    assert frames == {"del": True, "finalize": True}
    assert len(d) == 0 and not f.alive
    assert not in_finaliser(sys._getframe())


def _interrupt_inside_a_finaliser(record: list[str]) -> None:
    class Interrupts:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGINT)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.02:   # the handler runs in here, at a bytecode boundary
                pass
            record.append("finaliser returned")

    Interrupts()


def test_without_it_the_interrupt_is_lost(default_sigint, monkeypatch) -> None:
    """The failure this module exists for: Python drops a KeyboardInterrupt raised in a finaliser."""
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    record: list[str] = []
    _interrupt_inside_a_finaliser(record)
    time.sleep(0.2)   # no interrupt arrives
    assert [u.exc_type for u in unraisable] == [KeyboardInterrupt]
    assert record == []   # the finaliser was cut short


def test_an_interrupt_in_a_finaliser_is_raised_after_it(default_sigint, monkeypatch) -> None:
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    record: list[str] = []
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with finaliser_safe_sigint():
            _interrupt_inside_a_finaliser(record)
            reached.append("after the finaliser")
            time.sleep(5.0)   # the re-sent signal (after RESEND_DELAY_S) interrupts this
            reached.append("not interrupted")
    assert unraisable == []
    assert record == ["finaliser returned"]
    assert reached == ["after the finaliser"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # restored


def test_an_interrupt_deferred_at_the_end_of_the_block_is_raised_there(default_sigint) -> None:
    record: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with finaliser_safe_sigint():
            _interrupt_inside_a_finaliser(record)
    assert record == ["finaliser returned"]
    time.sleep(0.2)   # the deferred signal was cancelled: nothing arrives after the block


def test_an_ignored_sigint_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with finaliser_safe_sigint():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
