"""Unitree's own G1 simulator (unitree_mujoco's simulate_python), run headless as a DDS peer for tests.

    python tests/vendor_g1_driver.py --domain-id 57 [--timestep 0.005] [--band-length 0.8] [--realtime]
        [--cpu N]

The vendor's code runs unchanged, as its README in ../shared/vendor says: its ``config`` module is
set the way a user edits config.py (robot g1, the 29-DoF scene, the domain, ``lo``, elastic band on,
the timestep: 5 ms as shipped, or 2 ms), then ``ChannelFactoryInitialize(domain, "lo")``, the
vendor's ``UnitreeSdk2Bridge`` and ``ElasticBand``, and the loop of ``unitree_mujoco.py``'s
``SimulationThread`` (band force if enabled, ``mj_step``, sleep to real time) with no viewer. The
bridge class is subclassed only to observe: its ``LowCmdHandler`` runs as shipped (``super()``), then
the driver notes the command it applied.

The band is the gantry: its length is set (the viewer's keys 7/8 do that) so that it carries most
of the weight with the feet on the ground; at 5 ms a G1 whose feet hang in the air chatters under
any gains stiff enough to stand (deploy/gain_stability.py). It holds the robot until the test says
``release``: then the band is disabled and its force cleared. Clearing is needed because the
vendor's loop sets the band force only while the band is enabled, so a band disabled from the
viewer leaves its last force on the robot; a gantry that lets go does not.

Stdin, one command per line:
  ``phase NAME``  start a new window of records named NAME (the test forwards the controller's phases)
  ``release``     the gantry lets go
  ``stop``        print the JSON report on stdout and exit
Stdout: ``ready`` once the vendor's DDS entities exist and the loop runs, then the report: per window
its seconds, pelvis min/max (m), LowCmds applied, physics steps, the simulator's real-time factor
and the most physics steps one LowCmd's torque was held, when the band was released, the
LowCmds applied in all, and the last applied command's kp/kd per motor.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "shared" / "vendor"
SIMULATE_PYTHON = VENDOR / "unitree_mujoco" / "simulate_python"
SCENE = VENDOR / "unitree_mujoco" / "unitree_robots" / "g1" / "scene_29dof.xml"
SDK = VENDOR / "unitree_sdk2_python"
# Below the bridge and the controller (50): the peers that keep real time come first.
SIM_FIFO_PRIORITY = 60


@dataclass
class Window:
    """What happened between two ``phase`` lines."""

    name: str
    started: float
    pelvis_min_m: float = float("inf")
    pelvis_max_m: float = float("-inf")
    lowcmds: int = 0
    steps: int = 0
    seconds: float = 0.0
    # The vendor's handler computes a PD torque from the state when a LowCmd arrives and the loop
    # applies it until the next one: the most physics steps one torque was held says how stale it got.
    most_steps_per_lowcmd: int = 0


@dataclass
class Record:
    """The driver's observations, shared by the physics loop, the LowCmd handler and stdin."""

    timestep: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    windows: list[Window] = field(default_factory=lambda: [Window("start", time.monotonic())])
    lowcmds_applied: int = 0
    last_kp: list[float] = field(default_factory=list)
    last_kd: list[float] = field(default_factory=list)
    released_at_s: float | None = None
    steps_since_lowcmd: int = 0

    def report(self, started: float) -> dict:
        now = time.monotonic()
        with self.lock:
            self.windows[-1].seconds = now - self.windows[-1].started
            return {
                "windows": [
                    {
                        "name": w.name,
                        "seconds": round(w.seconds, 3),
                        "pelvis_min_m": round(w.pelvis_min_m, 4),
                        "pelvis_max_m": round(w.pelvis_max_m, 4),
                        "lowcmds": w.lowcmds,
                        "steps": w.steps,
                        "real_time_factor": round(w.steps * self.timestep / max(w.seconds, 1e-9), 3),
                        "most_steps_per_lowcmd": w.most_steps_per_lowcmd,
                    }
                    for w in self.windows
                ],
                "released_at_s": self.released_at_s,
                "lowcmds_applied": self.lowcmds_applied,
                "last_kp": self.last_kp,
                "last_kd": self.last_kd,
                "ran_s": round(now - started, 3),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain-id", type=int, required=True)
    parser.add_argument("--timestep", type=float, default=0.005, help="s; the vendor's config.py: 0.005")
    parser.add_argument("--band-length", type=float, default=0.8, help="m of the vendor's ElasticBand")
    parser.add_argument(
        "--realtime", action="store_true", help="run the simulator at SCHED_FIFO, as `chrt -f 40` would"
    )
    parser.add_argument("--cpu", type=int, help="run on this CPU only, as `taskset -c` would")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.realtime:
        # Before any thread starts, so that the vendor's physics and DDS threads inherit it.
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(SIM_FIFO_PRIORITY))
        except OSError as exc:
            print(f"vendor_g1_driver: normal priority ({exc})", file=sys.stderr, flush=True)

    sys.path[:0] = [str(SIMULATE_PYTHON), str(SDK)]
    import config  # the vendor's simulate_python/config.py, set as a user would edit it
    import mujoco

    config.ROBOT = "g1"
    config.ROBOT_SCENE = str(SCENE)
    config.DOMAIN_ID = args.domain_id
    config.INTERFACE = "lo"
    config.USE_JOYSTICK = 0
    config.PRINT_SCENE_INFORMATION = False
    config.ENABLE_ELASTIC_BAND = True
    config.SIMULATE_DT = args.timestep
    # Imported only now: the vendor module picks the unitree_hg messages from config.ROBOT on import.
    from unitree_sdk2py.core.channel import ChannelFactoryInitialize
    from unitree_sdk2py_bridge import ElasticBand, UnitreeSdk2Bridge

    record = Record(args.timestep)

    class ObservedBridge(UnitreeSdk2Bridge):
        """The vendor's bridge; its LowCmd handler as shipped, then a note of what it applied."""

        def LowCmdHandler(self, msg) -> None:  # the vendor's method name, overridden
            super().LowCmdHandler(msg)
            motors = msg.motor_cmd[: self.num_motor]
            with record.lock:
                record.lowcmds_applied += 1
                record.steps_since_lowcmd = 0
                record.windows[-1].lowcmds += 1
                record.last_kp = [float(m.kp) for m in motors]
                record.last_kd = [float(m.kd) for m in motors]

    mj_model = mujoco.MjModel.from_xml_path(config.ROBOT_SCENE)
    mj_data = mujoco.MjData(mj_model)
    elastic_band = ElasticBand()
    elastic_band.length = args.band_length
    band_attached_link = mj_model.body("torso_link").id
    mj_model.opt.timestep = config.SIMULATE_DT
    locker = threading.Lock()

    ChannelFactoryInitialize(config.DOMAIN_ID, config.INTERFACE)
    ObservedBridge(mj_model, mj_data)
    stop = threading.Event()
    started = time.monotonic()

    def simulation_thread() -> None:
        """unitree_mujoco.py's SimulationThread, with the viewer's is_running() replaced by ``stop``."""
        while not stop.is_set():
            step_start = time.perf_counter()
            with locker:
                if config.ENABLE_ELASTIC_BAND and elastic_band.enable:
                    mj_data.xfrc_applied[band_attached_link, :3] = elastic_band.Advance(
                        mj_data.qpos[:3], mj_data.qvel[:3]
                    )
                mujoco.mj_step(mj_model, mj_data)
                pelvis = float(mj_data.qpos[2])
            with record.lock:
                window = record.windows[-1]
                window.pelvis_min_m = min(window.pelvis_min_m, pelvis)
                window.pelvis_max_m = max(window.pelvis_max_m, pelvis)
                window.steps += 1
                if record.lowcmds_applied:
                    record.steps_since_lowcmd += 1
                    held = record.steps_since_lowcmd
                    window.most_steps_per_lowcmd = max(window.most_steps_per_lowcmd, held)
            time_until_next_step = mj_model.opt.timestep - (time.perf_counter() - step_start)
            if time_until_next_step > 0:
                time.sleep(time_until_next_step)

    sim = threading.Thread(target=simulation_thread, name="vendor-sim", daemon=True)
    sim.start()
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "phase" and len(words) == 2:
            now = time.monotonic()
            with record.lock:
                record.windows[-1].seconds = now - record.windows[-1].started
                record.windows.append(Window(words[1], now))
        elif words[0] == "release":
            with locker:
                elastic_band.enable = False
                mj_data.xfrc_applied[band_attached_link, :3] = 0.0
            with record.lock:
                record.released_at_s = round(time.monotonic() - started, 3)
        elif words[0] == "stop":
            break
    stop.set()
    sim.join(timeout=2.0)
    print(json.dumps(record.report(started)), flush=True)


if __name__ == "__main__":
    main()
