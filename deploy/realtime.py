"""Asking the OS to run a control loop ahead of other work: SCHED_FIFO where allowed, else a lower nice;
and keeping it on CPUs of its own (``pin_to_cpus``).

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


def pin_to_cpus(cpus: Iterable[int]) -> set[int]:
    """Keep the calling thread, and the threads it starts from now on (ZMQ's I/O thread with the first
    socket of a context), on ``cpus``; returns the CPUs it ran on before (``restore_cpus`` puts it back).
    A control loop on a core that nothing else is pinned to is not preempted by the other loop's work: on
    two cores, the sim bridge on one and the controller on the other kept the round trip's p99 under 1 ms
    in 12 of 12 runs, against 17 of 26 unpinned (docs/results.md, session 36)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, check_cpus(cpus))
    return before


def restore_cpus(saved: set[int]) -> None:
    """Put the calling thread back on ``saved`` (what ``pin_to_cpus`` returned)."""
    os.sched_setaffinity(0, saved)
