"""Calls nobody answers, in the windows with the real core and a real rendezvous server (the demo's).

The ringing lasts the product's 45 s in real time (the session must stay up that long while nothing but
keepalives cross it); the caller's window then says "No answer" and the callee's ringing window closes,
leaving a missed call. A caller who hangs up while it rings leaves a missed call too.

The waits poll the windows from the test's coroutine (`tests.helpers.poll.until`): the app's loop is Qt's
(qasync), where a nested `qtbot.waitUntil` loop would stall the core's asyncio tasks.
"""

from __future__ import annotations

import asyncio

import pytest

from app.embedded_server import Demo
from app.gui.call_window import CallWindow
from app.gui.main_window import MainWindow
from app.voice.call_signalling import NO_ANSWER_AFTER
from tests.helpers.poll import until


async def ring(alice: MainWindow, bob: MainWindow) -> tuple[CallWindow, CallWindow]:
    """Alice presses Call on Bob; both windows ring. Alice's call window, Bob's ringing window."""
    alice.select("bob")
    await until(alice.pane.call_button.isEnabled, 15, "the Call button enabled")
    alice.pane.call_button.click()
    await until(lambda: len(bob.calls) == 1, 15, "the incoming call")
    incoming = next(iter(bob.calls.values()))
    await until(incoming.accept_button.isVisible, 5, "the accept button")
    assert incoming.title.text() == "alice is calling"
    outgoing = next(iter(alice.calls.values()))
    await until(lambda: outgoing.state.text() == "Ringing…", 5, "the caller's ringing")
    return outgoing, incoming


async def bob_missed_it(bob: MainWindow, incoming: CallWindow, text: str) -> None:
    """Bob's ringing stopped, his window said why and went away, and the main window shows the missed call."""
    await until(lambda: incoming.phase == "ended", 5, "the ringing stopped")
    assert incoming.title.text() == "Missed call"
    assert incoming.state.text() == text
    assert not incoming.accept_button.isVisible()
    assert incoming._ringing is None  # the ringtone is off
    assert bob.notice.text() == "Missed call from alice."
    await until(lambda: not incoming.isVisible(), 10, "the ringing window closed")


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_call_nobody_answers_says_no_answer_at_45_s_and_is_a_missed_call(
    windows: tuple[Demo, MainWindow, MainWindow],
) -> None:
    _, alice, bob = windows
    outgoing, incoming = await ring(alice, bob)
    loop = asyncio.get_running_loop()
    rang = loop.time()
    # Past the session's 30 s idle timeout, nothing but keepalives on it: still ringing on both sides.
    await until(lambda: loop.time() - rang > 35, 40, "35 s of ringing")
    assert (outgoing.phase, outgoing.state.text()) == ("calling", "Ringing…")
    assert incoming.phase == "incoming"
    await until(lambda: outgoing.phase == "ended", NO_ANSWER_AFTER, "the caller's no answer")
    assert NO_ANSWER_AFTER - 1 < loop.time() - rang < NO_ANSWER_AFTER + 2
    assert outgoing.title.text() == "No answer"
    assert outgoing.state.text() == "bob did not answer."
    await bob_missed_it(bob, incoming, "You missed a call from alice.")
    # The session outlived the unanswered call: the next call needs no new connection.
    assert alice.hub is not None
    assert alice.hub.state("bob").state == "connected"
    assert alice.pane.call_button.isEnabled()


async def test_the_caller_hanging_up_while_it_rings_leaves_a_missed_call(
    windows: tuple[Demo, MainWindow, MainWindow],
) -> None:
    _, alice, bob = windows
    outgoing, incoming = await ring(alice, bob)
    assert outgoing.hangup_button.isVisible()
    outgoing.hangup_button.click()
    await until(lambda: outgoing.phase == "ended", 5, "the caller's call ended")
    assert outgoing.title.text() == "Cancelled"
    assert outgoing.state.text() == "You cancelled the call."
    await bob_missed_it(bob, incoming, "alice cancelled the call.")
