"""MuJoCo Warp backend: ``WarpBatch``, the surface of ``mujoco.batch.Batch`` on mujoco-warp.

The N simulations live in one ``mujoco_warp.Data`` with ``nworld=N`` on a Warp device (a CUDA GPU,
or Warp's CPU device, which runs the same kernels and is what the tests use). Task code keeps
computing its MDP in numpy from the arrays ``bind`` returns, so the CPU and Warp backends share
one definition of every observation, reward and termination.

This first version keeps float64 host mirrors of the bound fields and of the model fields given
per-env values with ``expand``. Each call that runs physics first uploads the mirrors of the input
fields (qpos, qvel, ctrl, ... as the task may have written them) and of the expanded model fields,
then runs the kernels for all worlds, then downloads every bound field: one batched copy per field
per call, never a per-env loop. The physics itself runs in float32 (mujoco-warp's precision).
``device_array`` gives the device-side array of a data field and ``per_world`` that of a model field
with per-env values (``wp.to_torch`` makes either a torch tensor without a copy) for code that stays
on the GPU.
"""

from __future__ import annotations

from typing import Any

import mujoco
import mujoco_warp as mjw
import numpy as np
import warp as wp

# MjData fields a task may write between calls: uploaded before physics runs.
INPUT_FIELDS = frozenset(
    {"qpos", "qvel", "act", "ctrl", "qfrc_applied", "xfrc_applied", "mocap_pos", "mocap_quat"}
)
# The same rows as mujoco.batch.Batch.state: the whole integration state of each simulation.
STATE_SIG = int(mjw.State.INTEGRATION)


class WarpBatch:
    """``nsim`` copies of ``model`` stepped together by mujoco-warp (surface of ``mujoco.batch.Batch``)."""

    def __init__(
        self,
        model: mujoco.MjModel,
        nsim: int,
        device: str | None = None,
        nconmax: int | None = None,
        njmax: int | None = None,
    ) -> None:
        self.mj_model = model
        self._host_data = mujoco.MjData(model)
        self.nsim = nsim
        self.device = wp.get_device(device)
        with wp.ScopedDevice(self.device):
            self.model = mjw.put_model(model)
            self.data = mjw.put_data(model, self._host_data, nworld=nsim, nconmax=nconmax, njmax=njmax)
            self.nstate = mujoco.mj_stateSize(model, STATE_SIG)
            self._state = wp.zeros((nsim, self.nstate), dtype=wp.float32)
        self._bound: dict[str, np.ndarray] = {}
        self._expanded: dict[str, np.ndarray] = {}
        self._per_world: set[str] = set()
        self.state = _StateRows(self)

    # ----------------------------------------------------------------- fields
    def bind(self, name: str) -> np.ndarray:
        """The live (nsim, ...) float64 host mirror of an MjData field, in MjData's shape per env."""
        if name not in self._bound:
            if not hasattr(self.data, name) or not hasattr(self._host_data, name):
                raise ValueError(f"bind: {name!r} is not a field of both MjData and mujoco_warp.Data")
            shape = np.shape(getattr(self._host_data, name))
            self._bound[name] = np.empty((self.nsim, *shape), dtype=np.float64)
            self._download(name)
        return self._bound[name]

    def expand(self, name: str) -> np.ndarray:
        """The live (nsim, ...) per-env values of a model field, uploaded before every physics call."""
        if name not in self._expanded:
            self.per_world(name)
            base = np.asarray(getattr(self.mj_model, name))
            self._expanded[name] = np.broadcast_to(base, (self.nsim, *base.shape)).astype(np.float64)
        return self._expanded[name]

    def per_world(self, name: str) -> wp.array:
        """The device array (nsim, ...) of a model field with its own values per world, made on first call.

        Code that stays on the device writes it in place (``wp.to_torch``) and steps with mujoco_warp
        itself; ``expand`` keeps a host mirror of it that this class's physics calls upload.
        """
        current = getattr(self.model, name, None)
        if name in self._per_world:
            return current
        base = np.asarray(getattr(self.mj_model, name))
        if not isinstance(current, wp.array) or current.shape != (1, *base.shape[: current.ndim - 1]):
            raise ValueError(f"expand: model field {name!r} has no per-world values in mujoco_warp")
        values = np.broadcast_to(base, (self.nsim, *base.shape))
        array = wp.array(values, dtype=current.dtype, device=self.device)
        setattr(self.model, name, array)
        self._per_world.add(name)
        return array

    def device_array(self, name: str) -> wp.array:
        """The device array of a ``mujoco_warp.Data`` field (nworld, ...), valid after the last call."""
        return getattr(self.data, name)

    # ----------------------------------------------------------------- physics
    def reset(self) -> None:
        """Every simulation to the model's defaults, then mj_forward."""
        with wp.ScopedDevice(self.device):
            mjw.reset_data(self.model, self.data)
            mjw.forward(self.model, self.data)
        self._download_all()

    def step(self, ids: Any = None, nstep: int = 1, stage: int = 0) -> None:
        """Advance every simulation ``nstep`` substeps, then compute ``stage`` at the new state.

        mujoco-warp steps all worlds together, so ``ids`` must be None.
        """
        if ids is not None:
            raise ValueError("WarpBatch.step steps all simulations; ids must be None")
        self._upload()
        with wp.ScopedDevice(self.device):
            for _ in range(nstep):
                mjw.step(self.model, self.data)
            _compute_stage(self.model, self.data, int(stage))
        self._download_all()

    def forward(self, ids: Any = None, stage: int = int(mujoco.mjtStage.mjSTAGE_ACC)) -> None:
        """Compute the forward stages up to ``stage`` in every world (the others come out unchanged)."""
        self._upload()
        with wp.ScopedDevice(self.device):
            _compute_stage(self.model, self.data, int(stage))
        self._download_all()

    def get_data(self, sim: int, data: mujoco.MjData | None = None) -> mujoco.MjData:
        """Simulation ``sim`` as an MjData (for rendering and single-env tools)."""
        data = mujoco.MjData(self.mj_model) if data is None else data
        self._upload()
        mjw.get_data_into(data, self.mj_model, self.data, world_id=sim)
        return data

    # ----------------------------------------------------------------- transfers
    def _upload(self) -> None:
        for name in INPUT_FIELDS.intersection(self._bound):
            target = getattr(self.data, name)
            target.assign(self._bound[name].reshape(target.shape + _element_shape(target)).astype(np.float32))
        for name, values in self._expanded.items():
            target = getattr(self.model, name)
            target.assign(values.reshape(target.shape + _element_shape(target)).astype(np.float32))

    def _download(self, name: str) -> None:
        self._bound[name][...] = getattr(self.data, name).numpy().reshape(self._bound[name].shape)

    def _download_all(self) -> None:
        for name in self._bound:
            self._download(name)

    def _read_state(self) -> np.ndarray:
        self._upload()
        with wp.ScopedDevice(self.device):
            mjw.get_state(self.model, self.data, self._state, STATE_SIG)
        return self._state.numpy().astype(np.float64)

    def _write_state(self, rows: Any, values: np.ndarray) -> None:
        state = self._read_state()
        state[rows] = values
        active = np.zeros(self.nsim, dtype=bool)
        active[rows] = True
        with wp.ScopedDevice(self.device):
            self._state.assign(state.astype(np.float32))
            mjw.set_state(self.model, self.data, self._state, STATE_SIG, wp.array(active, dtype=bool))
        self._download_all()


class _StateRows:
    """``batch.state``: each simulation's integration state as rows [nsim, nstate], read and set by rows."""

    def __init__(self, batch: WarpBatch) -> None:
        self._batch = batch

    @property
    def shape(self) -> tuple[int, int]:
        return (self._batch.nsim, self._batch.nstate)

    def __getitem__(self, rows: Any) -> np.ndarray:
        return self._batch._read_state()[rows]

    def __setitem__(self, rows: Any, values: np.ndarray) -> None:
        self._batch._write_state(rows, np.asarray(values, dtype=np.float64))

    def copy(self) -> np.ndarray:
        return self._batch._read_state()


def _compute_stage(model: mjw.Model, data: mjw.Data, stage: int) -> None:
    """mujoco's mjtStage on mujoco-warp: POS (kinematics, collisions, position sensors), VEL, or ACC."""
    if stage >= int(mujoco.mjtStage.mjSTAGE_ACC):
        mjw.forward(model, data)
    elif stage == int(mujoco.mjtStage.mjSTAGE_VEL):
        mjw.step1(model, data)
    elif stage == int(mujoco.mjtStage.mjSTAGE_POS):
        mjw.fwd_position(model, data)
        data.sensordata.zero_()
        mjw.sensor_pos(model, data)


def _element_shape(array: wp.array) -> tuple[int, ...]:
    """The numpy shape of one element of a Warp array (vec3 -> (3,), mat33 -> (3, 3), float -> ())."""
    return tuple(getattr(array.dtype, "_shape_", ()))
