"""Asking the OS to run a control loop ahead of other work: SCHED_FIFO where allowed, else a lower nice.

A 50 Hz controller and a 500 Hz bridge on a busy machine are otherwise descheduled for tens of
milliseconds at a time, long enough to trip the bridge's 100 ms watchdog. Both loops sleep between
steps, so a real-time priority does not starve the machine. Without the privilege (not root, no
CAP_SYS_NICE), the loop runs at normal priority and the caller is told so. Scheduling is per
thread on Linux: ``current_scheduling`` / ``restore_scheduling`` put the calling thread back when
its loop ends (a loop run inside a longer-lived process must not leave it real-time).
"""

from __future__ import annotations

import os
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
