"""Asking the OS to run a control loop ahead of other work: SCHED_FIFO where allowed, else a lower nice;
and keeping it on CPUs of its own; ``LoopPlacement`` does both for a loop and undoes them after.

A 50 Hz controller and a 500 Hz bridge on a busy machine are otherwise descheduled for tens of
milliseconds at a time, long enough to trip the bridge's 100 ms watchdog. Both loops sleep between
steps, so a real-time priority does not starve the machine. Without the privilege (not root, no
CAP_SYS_NICE), the loop runs at normal priority and the caller is told so. Scheduling is per
thread on Linux: ``current_scheduling`` / ``restore_scheduling`` put the calling thread back when
its loop ends (a loop run inside a longer-lived process must not leave it real-time).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

FIFO_PRIORITY = 50  # ros2_control's default for its control thread
NICE_BOOST = -10


@dataclass(frozen=True)
class Scheduling:
    policy: int
    priority: int
    nice: int


def current_scheduling() -> Scheduling:
    return Scheduling(
        os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.getpriority(os.PRIO_PROCESS, 0)
    )


def restore_scheduling(saved: Scheduling) -> None:
    """Best effort: put the calling thread back to ``saved``."""
    try:
        os.sched_setscheduler(0, saved.policy, os.sched_param(saved.priority))
        os.setpriority(os.PRIO_PROCESS, 0, saved.nice)
    except OSError:
        pass


def request_realtime(priority: int = FIFO_PRIORITY) -> str:
    """Raise the calling thread's scheduling priority as far as allowed; returns what it got, in words."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO priority {priority}"
    except (AttributeError, OSError):
        pass
    try:
        os.nice(NICE_BOOST)
        return f"nice {os.nice(0)}"
    except OSError as exc:
        return f"normal priority ({exc.strerror.lower() if exc.strerror else exc})"


def check_cpus(cpus: Iterable[int]) -> list[int]:
    """``cpus`` as a sorted list, if this process may run on each of them; else a ValueError naming them."""
    wanted = sorted(set(cpus))
    allowed = os.sched_getaffinity(0)
    outside = [cpu for cpu in wanted if cpu not in allowed]
    if not wanted or outside:
        raise ValueError(
            f"cpus: {outside or wanted} not among the CPUs this process may run on ({sorted(allowed)})"
        )
    return wanted


class LoopPlacement:
    """Where and how the calling thread runs a control loop: only on ``cpus`` (None: where it ran) and, with
    ``realtime``, at SCHED_FIFO where allowed (``scheduling`` says what it got). ``enter`` before the loop's
    first ZMQ socket: ZMQ's I/O thread, started with it, inherits both. ``leave`` puts the thread back as
    it was (a loop run inside a longer-lived process must not leave it pinned or real-time).

    A control loop on a core that nothing else is pinned to is not preempted by the other loop's work: on
    two cores, the sim bridge on one and the controller on the other kept the round trip's p99 under 1 ms
    in 12 of 12 runs, against 17 of 26 unpinned (docs/results.md, session 36)."""

    def __init__(self, cpus: Iterable[int] | None = None, realtime: bool = False) -> None:
        self.cpus = None if cpus is None else check_cpus(cpus)
        self.realtime = realtime
        self.scheduling: str | None = None
        self._saved_cpus: set[int] | None = None
        self._saved_scheduling: Scheduling | None = None

    @property
    def entered(self) -> bool:
        return self._saved_cpus is not None or self._saved_scheduling is not None

    def enter(self) -> None:
        if self.entered:
            return
        if self.cpus is not None:
            self._saved_cpus = os.sched_getaffinity(0)
            os.sched_setaffinity(0, self.cpus)
        if self.realtime:
            self._saved_scheduling = current_scheduling()
            self.scheduling = request_realtime()

    def leave(self) -> None:
        if self._saved_scheduling is not None:
            restore_scheduling(self._saved_scheduling)
            self._saved_scheduling = None
        if self._saved_cpus is not None:
            os.sched_setaffinity(0, self._saved_cpus)
            self._saved_cpus = None
