"""Actor seeds follow from (run seed, actor id, restart count) alone (issue 19: they used wall-clock time)."""

from __future__ import annotations

from striata.actors.env_actor import actor_seed
from striata.actors.parameter_store import ParameterStore


def test_seeds_are_reproducible_and_distinct_per_actor_and_restart() -> None:
    seeds = {
        (run, actor, restart): actor_seed(run, actor, restart)
        for run in (0, 1)
        for actor in range(8)
        for restart in range(4)
    }
    assert len(set(seeds.values())) == len(seeds)
    assert all(0 <= s < 2**31 for s in seeds.values())
    assert actor_seed(3, 2, 1) == actor_seed(3, 2, 1)


def test_the_store_counts_each_actors_starts() -> None:
    store = ParameterStore()
    assert [store.start(0), store.start(1), store.start(0), store.start(0)] == [0, 0, 1, 2]
