"""What `striata intervene` records, against a real `striata train` job with hil on: an episode a person
takes over while it is under way (it began before the console watched it) is in the session, and the
session holds as many intervened rows as the learner received."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from console_job import hil_job, intervene, wait_for
from test_console_control import FORWARD, Browser, control, drive, takeover

from striata.learner.session_dataset import read_episode_rows, read_session_episodes

ATTEMPTS = 6
BACK = [-1.0, 0.0, 0.0, 1.0]


async def take_over_an_episode_under_way(browser: Browser) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Watch another env and take it over at once, until the episode taken over is the one that was under
    way when watching began; drive it, label it. Returns that episode's first step seen and the
    ``episode_end`` of every episode taken over (each is labelled, so each ends and is saved)."""
    ends = []
    for attempt in range(ATTEMPTS):
        env = (attempt + 1) % 2
        sent = time.perf_counter()
        await browser.send(type="select", env=env)
        _, batch = await browser.wait(
            lambda m, env=env: m["type"] == "steps" and m["items"] and browser.state["env"] == env,
            f"steps of env {env}",
            after=sent,
        )
        first = batch["items"][0]
        await takeover(browser)
        taken = await drive(browser, FORWARD)
        await drive(browser, BACK)
        labelled = time.perf_counter()
        await browser.send(type="label", success=True)
        _, end = await browser.wait(
            lambda m, e=taken["episode"]: m["type"] == "episode_end" and m["episode"] == e,
            "the labelled episode's end",
            after=labelled,
            timeout_s=30,
        )
        ends.append(end)
        await browser.wait(control(False), "the hand-back after the label", after=labelled)
        await browser.wait(
            lambda m, e=taken["episode"]: (
                m["type"] == "notice" and m["text"].startswith(f"episode {e} saved")
            ),
            "the saved notice",
            after=labelled,
            timeout_s=30,
        )
        if taken["episode"] == first["episode"] and first["t"] > 0:
            return first, ends
    raise AssertionError(f"no takeover landed in an episode under way in {ATTEMPTS} attempts: {ends}")


def test_an_episode_taken_over_while_under_way_is_recorded_whole(tmp_path) -> None:
    with hil_job(tmp_path) as job, intervene(str(job.run_dir), tmp_path) as console:

        async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
            browser = await Browser.open(console.url)
            try:
                return await take_over_an_episode_under_way(browser)
            finally:
                await browser.close()

        first, ends = asyncio.run(scenario())
        taken_over = sum(end["interventions"] for end in ends)
        wait_for(
            lambda: job.status().get("hil", {}).get("intervention_transitions", 0) >= taken_over,
            60,
            "the intervention transitions at the learner",
            job.log,
        )
        console.stop()
        summary = job.stop()

    episodes = read_session_episodes(job.run_dir / "sessions")
    intervened = sum(int(sum(read_episode_rows(e).column("complementary_info.intervention").to_pylist()))
                     for e in episodes)  # fmt: skip
    (under_way,) = [
        e for e in episodes if (e["env"], e["actor_episode"]) == (ends[-1]["env"], first["episode"])
    ]
    print(
        f"episode under way from t={under_way['first_t']} when watched ({under_way['missed_steps']} steps "
        f"before), {under_way['interventions']} steps taken over; {len(ends)} takeover(s); the learner "
        f"received {summary['intervention_transitions']} intervention transitions; the session holds "
        f"{intervened} intervened rows"
    )
    assert summary["intervention_transitions"] == intervened == taken_over
    assert under_way["interventions"] == ends[-1]["interventions"] > 0 and under_way["label"] == 1
    assert under_way["first_t"] >= first["t"] > 0  # begun before the console watched: kept from there on
    assert under_way["missed_steps"] == ends[-1]["length"] - under_way["length"] == under_way["first_t"]
    assert under_way["missed_interventions"] == 0
