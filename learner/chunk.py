"""The trajectory chunk: what actors send to the learner (the learner owns this contract).

A chunk is a plain ``dict[str, np.ndarray]`` (numpy only, so it travels through Ray's object store
without copies or torch pickles) covering ``T`` consecutive control steps of ``N`` envs:

=================  ==============  =============================================================
key                shape / dtype   meaning
=================  ==============  =============================================================
``obs``            [T, N, ...]     observation the action was taken on; an array or a dict of
                                   arrays (G1: ``{"policy": [T,N,160], "critic": [T,N,286]}``)
``actions``        [T, N, A] f     actions sent to the env (the human's during an intervention)
``rewards``        [T, N] f        reward of the step (NaN allowed only where ``reward_pending``)
``terminated``     [T, N] bool     episode ended by failure/success: no bootstrapping
``truncated``      [T, N] bool     time-out: bootstrapped from ``final_obs`` (disjoint from above)
``policy_version`` [T, N] int      learner version of the weights that acted (lag = now - this)
``intervention``   [T, N] bool     a human chose the action (HIL): copied into the demo buffer
``reward_pending`` [T, N] bool     reward still awaited from the reward server (relabel first)
``frame_ids``      [T, N] int      id of the frame sent to the reward server, -1 when none
``last_obs``       [N, ...]        observation after the chunk's last step (bootstrap value of
                                   step T-1, SAC's ``next_obs`` of step T-1)
``final_obs``      [K, ...]        last observation of each truncated step, K = truncated.sum(),
                                   rows in ``np.nonzero(truncated)`` order (time-major)
``log_prob``       [T, N] f        PPO: log pi_old(action | obs) of the acting policy
``value``          [T, N] f        PPO: V(obs) of the acting critic
``human_label``    [T, N] int8     a person's label of the episode that ended at this step (HIL):
                                   1 success, 0 failure, -1 none; optional (``ChunkBuilder`` always
                                   writes it, hand-made chunks may leave it out)
``start_frame_ids`` [N] int        reward model on: the frame whose label is the potential of
                                   ``obs[0]`` (the episode's latest frame before the chunk), -1 when
                                   none (an episode that starts in the chunk has potential 0)
=================  ==============  =============================================================

With a reward model, ``frame_ids[t, n]`` names the frame of the state *after* step t (for an
episode that ended at t, its last state, rendered before the auto-reset), and
``reward_pending`` marks the steps whose reward awaits labels: ``striata.learner.relabel`` writes the
shaped rewards and clears the flag; steps still pending when it gives up are unlabelled (SAC drops
them, PPO masks them).

``obs``, ``last_obs`` and ``final_obs`` have the same structure (all arrays, or dicts with the same
keys). Envs auto-reset, so ``obs[t + 1]`` of an env that ended at step ``t`` is the first
observation of its next episode; the env's ``info["final_obs"]`` / ``info["final_ids"]`` give the
real last observation of truncated episodes, which ``ChunkBuilder`` files into ``final_obs``.

Actors build chunks with ``ChunkBuilder`` (one ``add`` per env step, then ``build(last_obs)``; it
stores float observations as float32 and uint8 frames as they are);
the learner checks them with ``validate_chunk``; ``concat_chunks`` joins chunks along time or envs;
``flatten_transitions`` turns a chunk into SAC transitions (obs, action, reward, next_obs,
terminated, intervention); ``apply_rewards`` writes relabelled rewards and clears their pending flag;
``slice_chunk`` cuts a chunk to a range of steps and a set of envs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Obs = np.ndarray | dict[str, np.ndarray]
Chunk = dict[str, Any]

STEP_KEYS = (
    "actions",
    "rewards",
    "terminated",
    "truncated",
    "policy_version",
    "intervention",
    "reward_pending",
    "frame_ids",
)
OBS_KEYS = ("obs", "last_obs", "final_obs")
PPO_KEYS = ("log_prob", "value")
# Optional per-step keys, carried by concat_chunks / slice_chunk like the PPO ones.
HIL_KEYS = ("human_label",)
OPTIONAL_STEP_KEYS = (*PPO_KEYS, *HIL_KEYS)
ENV_KEYS = ("start_frame_ids",)
_BOOL_KEYS = ("terminated", "truncated", "intervention", "reward_pending")
_INT_KEYS = ("policy_version", "frame_ids", "human_label")
_FLOAT_KEYS = ("rewards", "log_prob", "value")


class ChunkError(ValueError):
    """A chunk that breaks the contract; the message names the key and the shapes."""


def map_obs(fn: Callable[[np.ndarray], np.ndarray], obs: Obs) -> Obs:
    """Apply ``fn`` to an observation array, or to every array of an observation dict."""
    if isinstance(obs, dict):
        return {key: fn(value) for key, value in obs.items()}
    return fn(obs)


def _obs_items(obs: Obs, name: str) -> dict[str | None, tuple[str, Any]]:
    """Observation arrays by dict key (None for a plain array), each with its label for errors."""
    if isinstance(obs, dict):
        if not obs:
            raise ChunkError(f"chunk[{name!r}] is an empty dict")
        return {key: (f"chunk[{name!r}][{key!r}]", value) for key, value in obs.items()}
    return {None: (f"chunk[{name!r}]", obs)}


def _check_array(label: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise ChunkError(f"{label}: expected a numpy array, got {type(value).__name__}")
    return value


def validate_chunk(chunk: Chunk, require: Sequence[str] = ()) -> tuple[int, int]:
    """Check ``chunk`` against the contract (plus the optional keys in ``require``); return (T, N).

    Raises ``ChunkError`` naming the first bad key, its shape and the shape expected.
    """
    if not isinstance(chunk, dict):
        raise ChunkError(f"a chunk is a dict of numpy arrays, got {type(chunk).__name__}")
    missing = [key for key in (*OBS_KEYS, *STEP_KEYS, *require) if key not in chunk]
    if missing:
        raise ChunkError(f"chunk is missing key(s) {missing}; it has {sorted(chunk)}")
    rewards = _check_array("chunk['rewards']", chunk["rewards"])
    if rewards.ndim != 2:
        raise ChunkError(f"chunk['rewards']: expected shape (T, N), got {rewards.shape}")
    t, n = rewards.shape
    source = " (T, N as in chunk['rewards'])"

    for key in (*STEP_KEYS, *(k for k in OPTIONAL_STEP_KEYS if k in chunk)):
        value = _check_array(f"chunk[{key!r}]", chunk[key])
        if key == "actions":
            if value.ndim != 3 or value.shape[:2] != (t, n):
                expected = f"(T, N, A) = ({t}, {n}, A)"
                raise ChunkError(f"chunk['actions']: expected shape {expected}{source}, got {value.shape}")
        elif value.shape != (t, n):
            raise ChunkError(f"chunk[{key!r}]: expected shape (T, N) = ({t}, {n}){source}, got {value.shape}")
        if key in _BOOL_KEYS and value.dtype != np.bool_:
            raise ChunkError(f"chunk[{key!r}]: expected dtype bool, got {value.dtype}")
        if key in _INT_KEYS and not np.issubdtype(value.dtype, np.integer):
            raise ChunkError(f"chunk[{key!r}]: expected an integer dtype, got {value.dtype}")
        if key in (*_FLOAT_KEYS, "actions") and not np.issubdtype(value.dtype, np.floating):
            raise ChunkError(f"chunk[{key!r}]: expected a float dtype, got {value.dtype}")

    if not np.isfinite(chunk["actions"]).all():
        raise ChunkError("chunk['actions'] holds non-finite values")
    if "human_label" in chunk and not np.isin(chunk["human_label"], (-1, 0, 1)).all():
        bad = np.unique(chunk["human_label"][~np.isin(chunk["human_label"], (-1, 0, 1))]).tolist()
        raise ChunkError(f"chunk['human_label'] holds {bad}; allowed: -1 (none), 0 (failure), 1 (success)")
    settled = ~chunk["reward_pending"]
    if not np.isfinite(rewards[settled]).all():
        raise ChunkError("chunk['rewards'] holds non-finite values at steps not marked reward_pending")
    both = chunk["terminated"] & chunk["truncated"]
    if both.any():
        step, env = np.argwhere(both)[0]
        raise ChunkError(f"chunk['terminated'] and chunk['truncated'] are both set at [t={step}, n={env}]")

    if "start_frame_ids" in chunk:
        value = _check_array("chunk['start_frame_ids']", chunk["start_frame_ids"])
        if value.shape != (n,) or not np.issubdtype(value.dtype, np.integer):
            raise ChunkError(f"chunk['start_frame_ids']: expected an integer array of shape ({n},), got "
                             f"{value.dtype} {value.shape}")  # fmt: skip

    num_final = int(chunk["truncated"].sum())
    structure = _obs_items(chunk["obs"], "obs")
    for name, lead in (("obs", (t, n)), ("last_obs", (n,)), ("final_obs", (num_final,))):
        items = _obs_items(chunk[name], name)
        if items.keys() != structure.keys():
            raise ChunkError(f"chunk[{name!r}] has keys {list(items)}, chunk['obs'] has {list(structure)}")
        for key, (label, value) in items.items():
            value = _check_array(label, value)
            reference = _check_array(structure[key][0], structure[key][1])
            if reference.ndim < 2:
                raise ChunkError(f"{structure[key][0]}: expected shape (T, N, ...), got {reference.shape}")
            expected = (*lead, *reference.shape[2:])
            if value.shape != expected:
                what = " (one row per truncated step)" if name == "final_obs" else ""
                raise ChunkError(f"{label}: expected shape {expected}{what}, got {value.shape}")
    return t, n


def _concat_obs(parts: Sequence[Obs], axis: int) -> Obs:
    if isinstance(parts[0], dict):
        return {key: np.concatenate([p[key] for p in parts], axis=axis) for key in parts[0]}
    return np.concatenate(parts, axis=axis)


def concat_chunks(chunks: Sequence[Chunk], axis: int = 1) -> Chunk:
    """Join chunks along envs (``axis=1``, equal T, e.g. several actors) or time (``axis=0``, equal N,
    consecutive chunks of the same envs: ``last_obs`` is taken from the last one)."""
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (time) or 1 (envs), got {axis}")
    if not chunks:
        raise ValueError("concat_chunks needs at least one chunk")
    shapes = [validate_chunk(c) for c in chunks]
    other = 1 - axis
    if len({s[other] for s in shapes}) != 1:
        what = "T" if axis == 1 else "N"
        raise ChunkError(f"concat_chunks(axis={axis}) needs equal {what}; chunks have (T, N) = {shapes}")
    optional = [k for k in OPTIONAL_STEP_KEYS if all(k in c for c in chunks)]
    out: Chunk = {key: np.concatenate([c[key] for c in chunks], axis=axis) for key in (*STEP_KEYS, *optional)}
    out["obs"] = _concat_obs([c["obs"] for c in chunks], axis)
    if all("start_frame_ids" in c for c in chunks):
        starts = [c["start_frame_ids"] for c in chunks]
        out["start_frame_ids"] = starts[0] if axis == 0 else np.concatenate(starts)
    if axis == 0:
        # Time-major row order of final_obs is kept by stacking chunk after chunk.
        out["last_obs"] = chunks[-1]["last_obs"]
        out["final_obs"] = _concat_obs([c["final_obs"] for c in chunks], 0)
        return out
    out["last_obs"] = _concat_obs([c["last_obs"] for c in chunks], 0)
    # Rows of final_obs follow np.nonzero(truncated) of the joined chunk: sort by (t, global env).
    offsets = np.cumsum([0] + [s[1] for s in shapes[:-1]])
    width = sum(s[1] for s in shapes)
    keys = np.concatenate(
        [
            np.nonzero(c["truncated"])[0] * width + np.nonzero(c["truncated"])[1] + off
            for c, off in zip(chunks, offsets, strict=True)
        ]
    )
    order = np.argsort(keys, kind="stable")
    out["final_obs"] = map_obs(lambda a: a[order], _concat_obs([c["final_obs"] for c in chunks], 0))
    return out


def slice_chunk(chunk: Chunk, start: int, stop: int, envs: np.ndarray) -> Chunk:
    """Steps ``start:stop`` of envs ``envs`` as a chunk of their own (copies).

    Its ``last_obs`` is the observation after step ``stop - 1`` (``obs[stop]``, or the chunk's
    ``last_obs`` when ``stop == T``), so a learner bootstraps across the cut as across a time-out;
    ``final_obs`` keeps the rows of the truncated steps inside the slice. ``start_frame_ids`` is not
    carried over (slices are cut from relabelled chunks, whose rewards no longer need it).
    """
    t, _ = validate_chunk(chunk)
    if not 0 <= start < stop <= t:
        raise ValueError(f"slice_chunk: need 0 <= start < stop <= {t}, got {start}:{stop}")
    envs = np.asarray(envs, dtype=np.int64)
    out: Chunk = {
        key: chunk[key][start:stop][:, envs].copy()
        for key in (*STEP_KEYS, *OPTIONAL_STEP_KEYS)
        if key in chunk
    }
    out["obs"] = map_obs(lambda a: a[start:stop][:, envs].copy(), chunk["obs"])
    if stop == t:
        out["last_obs"] = map_obs(lambda a: a[envs].copy(), chunk["last_obs"])
    else:
        out["last_obs"] = map_obs(lambda a: a[stop][envs].copy(), chunk["obs"])
    truncated = chunk["truncated"]
    rows = np.cumsum(truncated.reshape(-1)).reshape(truncated.shape) - 1  # final_obs row of each step
    keep = rows[start:stop][:, envs][truncated[start:stop][:, envs]]
    out["final_obs"] = map_obs(lambda a: a[keep].copy(), chunk["final_obs"])
    validate_chunk(out)
    return out


def next_observations(chunk: Chunk) -> Obs:
    """``next_obs`` [T, N, ...]: ``obs[t+1]``, ``last_obs`` at ``T-1``, and ``final_obs`` at truncated steps.

    At terminated steps it holds the next episode's first observation; targets mask it out.
    """
    truncated = chunk["truncated"]

    def build(obs: np.ndarray, last: np.ndarray, final: np.ndarray) -> np.ndarray:
        nxt = np.concatenate([obs[1:], last[None]], axis=0)
        nxt[truncated] = final
        return nxt

    if isinstance(chunk["obs"], dict):
        return {k: build(chunk["obs"][k], chunk["last_obs"][k], chunk["final_obs"][k]) for k in chunk["obs"]}
    return build(chunk["obs"], chunk["last_obs"], chunk["final_obs"])


def flatten_transitions(chunk: Chunk, drop_pending: bool = True) -> dict[str, Any]:
    """SAC transitions of a chunk, flat over (T, N) in time-major order.

    Returns ``obs``, ``actions``, ``rewards``, ``next_obs``, ``terminated``, ``intervention`` with a
    leading axis M. Steps whose reward is still pending are dropped (``drop_pending``), since a
    placeholder reward would be learnt as if real.
    """
    t, n = validate_chunk(chunk)
    keep = ~chunk["reward_pending"].reshape(-1) if drop_pending else np.ones(t * n, dtype=bool)

    def flat(a: np.ndarray) -> np.ndarray:
        return a.reshape(t * n, *a.shape[2:])[keep]

    return {
        "obs": map_obs(flat, chunk["obs"]),
        "actions": flat(chunk["actions"]),
        "rewards": flat(chunk["rewards"]),
        "next_obs": map_obs(flat, next_observations(chunk)),
        "terminated": flat(chunk["terminated"]),
        "intervention": flat(chunk["intervention"]),
    }


def apply_rewards(chunk: Chunk, steps: np.ndarray, envs: np.ndarray, rewards: np.ndarray) -> None:
    """Write relabelled rewards at (``steps[i]``, ``envs[i]``) in place and clear their pending flag."""
    chunk["rewards"][steps, envs] = rewards
    chunk["reward_pending"][steps, envs] = False


def _stored(obs: np.ndarray) -> np.ndarray:
    """A copy of an observation array as the chunk stores it: floats as float32 (half the bytes of the
    float64 some envs return, and what the networks read), other dtypes (uint8 frames) as they are."""
    obs = np.asarray(obs)
    return obs.astype(np.float32) if np.issubdtype(obs.dtype, np.floating) else obs.copy()


def _flags(value: np.ndarray | None, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if value is None else np.asarray(value, dtype=bool)


class ChunkBuilder:
    """Collects env steps into a chunk; one builder per actor, reused chunk after chunk.

    Per step: ``add(obs, actions, reward, terminated, truncated, info, ...)`` with ``obs`` the
    observation the actions were chosen on and ``info`` the env's step info (``final_obs`` /
    ``final_ids`` are read from it). Then ``build(last_obs)`` returns the chunk and starts a new one.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self._steps: list[dict[str, Any]] = []
        self._final: list[Obs] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(
        self,
        obs: Obs,
        actions: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        info: dict[str, Any],
        *,
        policy_version: int,
        log_prob: np.ndarray | None = None,
        value: np.ndarray | None = None,
        intervention: np.ndarray | None = None,
        reward_pending: np.ndarray | None = None,
        frame_ids: np.ndarray | None = None,
        human_label: np.ndarray | None = None,
    ) -> None:
        n = self.num_envs
        truncated = np.asarray(truncated, dtype=bool)
        step: dict[str, Any] = {
            "obs": map_obs(_stored, obs),
            "actions": np.asarray(actions, dtype=np.float32),
            "rewards": np.asarray(reward, dtype=np.float32),
            "terminated": np.asarray(terminated, dtype=bool),
            "truncated": truncated,
            "policy_version": np.full(n, policy_version, dtype=np.int64),
            "intervention": _flags(intervention, n),
            "reward_pending": _flags(reward_pending, n),
            "frame_ids": np.full(n, -1, np.int64) if frame_ids is None else np.asarray(frame_ids, np.int64),
            "human_label": np.full(n, -1, np.int8)
            if human_label is None
            else np.asarray(human_label, np.int8),
        }
        if log_prob is not None:
            step["log_prob"] = np.asarray(log_prob, dtype=np.float32)
        if value is not None:
            step["value"] = np.asarray(value, dtype=np.float32)
        if self._steps and step.keys() != self._steps[0].keys():
            first = sorted(self._steps[0])
            raise ChunkError(f"step {len(self._steps)} has keys {sorted(step)}, step 0 had {first}")
        if truncated.any():
            ids = np.asarray(info.get("final_ids", np.zeros(0, np.int64)))
            missing = np.setdiff1d(np.flatnonzero(truncated), ids)
            if missing.size:
                raise ChunkError(f"envs {missing.tolist()} are truncated but info['final_ids'] lacks them")
            # final_ids may also list terminated envs (final_obs_on_termination): keep the truncated rows.
            rows = np.flatnonzero(truncated[ids])
            self._final.append(map_obs(lambda a: _stored(a[rows]), info["final_obs"]))
        self._steps.append(step)

    def build(self, last_obs: Obs, start_frame_ids: np.ndarray | None = None) -> Chunk:
        """The chunk of the steps added so far (validated); the builder is then empty."""
        if not self._steps:
            raise ChunkError("ChunkBuilder.build: no steps were added")
        chunk: Chunk = {}
        for key in self._steps[0]:
            values = [s[key] for s in self._steps]
            if key == "obs" and isinstance(values[0], dict):
                chunk[key] = {k: np.stack([v[k] for v in values]) for k in values[0]}
            else:
                chunk[key] = np.stack(values)
        chunk["last_obs"] = map_obs(_stored, last_obs)
        if self._final:
            chunk["final_obs"] = _concat_obs(self._final, 0)
        else:
            chunk["final_obs"] = map_obs(lambda a: np.zeros((0, *a.shape[2:]), a.dtype), chunk["obs"])
        if start_frame_ids is not None:
            chunk["start_frame_ids"] = np.asarray(start_frame_ids, dtype=np.int64).copy()
        self._steps, self._final = [], []
        validate_chunk(chunk)
        return chunk
