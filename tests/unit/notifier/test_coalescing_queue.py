"""Throttle window and per-target lanes (CONTRACT §6): leading edge, interval, ordering."""

from __future__ import annotations

from typing import Any

from services.notifier.coalescing_queue import CoalescingQueue
from services.notifier.net_delta import ResourceChanges
from services.notifier.throttle_window import ThrottleWindow


def pod(name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "name": name,
        "namespace": "ns",
        "cluster": "east",
        "GVK": {"Group": "", "Version": "v1", "Kind": "Pod"},
        "status": {"phase": phase},
    }


def test_window_leading_edge_then_interval() -> None:
    window = ThrottleWindow(10)
    assert window.allows(100.0)
    window.sent(100.0)
    assert not window.allows(105.0)
    assert window.opens_at(105.0) == 110.0
    assert window.allows(110.0)


def test_window_of_zero_never_waits() -> None:
    window = ThrottleWindow(0)
    window.sent(100.0)
    assert window.allows(100.0)


def test_first_change_goes_at_once_then_coalesces_until_the_window_opens() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 10)
    queue.add("s", ResourceChanges(created=(pod("a"),)), observed_at=99.0)
    [first] = queue.take_due(100.0)
    assert first.number == 1
    assert first.changes == ResourceChanges(created=(pod("a"),))
    assert first.observed_at == 99.0
    queue.attempted("s", 100.0)
    queue.finished("s")
    queue.add("s", ResourceChanges(modified=(pod("a", "P1"),)), observed_at=101.0)
    queue.add("s", ResourceChanges(modified=(pod("a", "P2"),)), observed_at=102.0)
    assert queue.take_due(105.0) == []
    assert queue.next_due_at(105.0) == 110.0
    [second] = queue.take_due(110.0)
    assert second.number == 2
    assert second.changes == ResourceChanges(modified=(pod("a", "P2"),))
    assert second.observed_at == 101.0


def test_changes_while_one_is_out_wait_for_it_to_finish() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 0)
    queue.add("s", ResourceChanges(created=(pod("a"),)), None)
    assert len(queue.take_due(1.0)) == 1
    queue.add("s", ResourceChanges(created=(pod("b"),)), None)
    assert queue.take_due(2.0) == []
    assert queue.is_busy("s")
    queue.finished("s")
    [next_one] = queue.take_due(3.0)
    assert next_one.changes == ResourceChanges(created=(pod("b"),))


def test_the_queue_says_when_a_change_waits_behind_a_notification_still_out() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 0)
    queue.add("s", ResourceChanges(created=(pod("a"),)), None)
    assert not queue.holds_back()  # nothing out: it goes at once
    queue.take_due(1.0)
    assert not queue.holds_back()  # out, but nothing behind it
    queue.add("s", ResourceChanges(created=(pod("b"),)), None)
    assert queue.holds_back()
    queue.finished("s")
    assert not queue.holds_back()  # free to go: take_due has it now
    queue.take_due(2.0)
    queue.add("s", ResourceChanges(created=(pod("c"),)), None)
    restored = CoalescingQueue()
    restored.restore("s", 0, queue.snapshot("s"), busy=True)
    assert restored.holds_back()
    restored.remove("s")
    assert not restored.holds_back()


def test_a_net_change_that_cancels_out_is_dropped() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 0)
    queue.add("s", ResourceChanges(created=(pod("a"),)), None)
    queue.add("s", ResourceChanges(deleted=(pod("a"),)), None)
    assert queue.take_due(1.0) == []
    assert not queue.is_busy("s")
    assert queue.next_due_at(1.0) is None


def test_targets_are_independent() -> None:
    queue = CoalescingQueue()
    queue.configure("slow", 0)
    queue.configure("fast", 0)
    queue.add("slow", ResourceChanges(created=(pod("a"),)), None)
    queue.take_due(1.0)  # slow is now busy, never finished
    queue.add("fast", ResourceChanges(created=(pod("a"),)), None)
    assert [o.target for o in queue.take_due(1.0)] == ["fast"]


def test_snapshot_restores_pending_window_and_numbering() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 10)
    queue.add("s", ResourceChanges(created=(pod("a"),)), 1.0)
    queue.take_due(100.0)
    queue.attempted("s", 100.0)
    queue.finished("s")
    queue.add("s", ResourceChanges(created=(pod("b"),)), 2.0)
    snapshot = queue.snapshot("s")
    restored = CoalescingQueue()
    restored.restore("s", 10, snapshot, busy=False)
    assert restored.take_due(105.0) == []
    [again] = restored.take_due(110.0)
    assert again.number == 2
    assert again.changes == ResourceChanges(created=(pod("b"),))


def test_a_notification_times_its_oldest_change_and_oldest_delta() -> None:
    queue = CoalescingQueue()
    queue.configure("s", 10)
    queue.attempted("s", 100.0)  # the window is closed until 110: the changes coalesce
    queue.add("s", ResourceChanges(created=(pod("a"),)), observed_at=101.0, delta_at=101.5)
    queue.add("s", ResourceChanges(created=(pod("b"),)), observed_at=100.5, delta_at=102.0)
    queue.add("s", ResourceChanges(created=(pod("c"),)), observed_at=103.0, delta_at=None)
    (out,) = queue.take_due(110.0)
    assert (out.observed_at, out.delta_at) == (100.5, 101.5)
    queue.finished("s")
    queue.add("s", ResourceChanges(created=(pod("d"),)), observed_at=120.0)
    (nxt,) = queue.take_due(121.0)
    assert (nxt.observed_at, nxt.delta_at) == (120.0, None)  # the lane forgot the old times
