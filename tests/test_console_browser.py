"""The console end to end in headless Chromium (Playwright) on a real `striata train` job with hil on.

A person's session, as the issue asks: open the page, see frames change, take over, drive with the
keyboard and a gamepad (a fake one behind ``navigator.getGamepads``), label success; then the learner
received exactly the intervention transitions the session on disk holds for that episode, the episode
ended with the label, and the session holds its frames, actions and flags.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from console_job import hil_job, intervene, wait_for

from striata.learner.session_dataset import read_episode_frames, read_episode_rows, read_session_episodes

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium)")

# A gamepad the test moves: the page polls navigator.getGamepads() as it would a real one.
FAKE_GAMEPAD = """
(() => {
  const buttons = Array.from({length: 17}, () => ({pressed: false, touched: false, value: 0}));
  const pad = {id: "test gamepad", index: 0, connected: true, mapping: "standard", timestamp: 0,
    axes: [0, 0, 0, 0], buttons};
  window.testGamepad = pad;
  navigator.getGamepads = () => [pad, null, null, null];
})();
"""
S = "window.striataConsole"


def executed(page, condition: str, timeout_ms: int = 30_000) -> None:
    """Wait until a taken-over step's action ``a`` (as the page received it) meets ``condition``."""
    page.wait_for_function(
        f"{S}.history.some(s => s.intervention && (a => {condition})(s.action))", timeout=timeout_ms
    )


def test_a_person_takes_over_drives_and_labels_success_in_the_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    started = time.monotonic()
    with (
        hil_job(tmp_path) as job,
        intervene(str(job.run_dir), tmp_path) as console,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.add_init_script(FAKE_GAMEPAD)
        page.goto(console.url)

        # Live frames: the JPEGs differ from one another, and so does the picture on the page.
        page.wait_for_function(f"{S}.frames >= 5 && new Set({S}.frameSums).size >= 3", timeout=60_000)
        first = page.locator("#frame").screenshot()
        page.wait_for_function(f"{S}.steps > 0", timeout=10_000)
        time.sleep(1.0)
        assert page.locator("#frame").screenshot() != first
        assert page.locator("#role").text_content() == "controller"
        assert page.evaluate(f"{S}.gamepad && {S}.gamepad.id") == "test gamepad"

        # Take over in an episode that started while the page watched, so the session holds all of it.
        ended = page.evaluate(f"{S}.episodes.length")
        page.wait_for_function(f"{S}.episodes.length > {ended}", timeout=60_000)
        page.click("button[data-cmd=takeover]")
        page.wait_for_function(f"{S}.state.takeover === true", timeout=10_000)
        assert page.locator("#control").text_content() == "person (taken over)"

        # Each input is held until a taken-over step executed it (the actor steps at its own pace).
        page.keyboard.down("w")  # action[0] = +1, gripper open (latched -1 from the start)
        executed(page, "a[0] === 1 && a[2] === 0 && a[3] === -1")
        page.keyboard.up("w")
        page.keyboard.press("Space")  # gripper closed
        page.evaluate("window.testGamepad.axes[3] = -1")  # right stick up: action[2] = +1
        executed(page, "a[0] === 0 && a[2] === 1 && a[3] === 1")
        page.evaluate("window.testGamepad.axes[3] = 0")
        page.evaluate("window.testGamepad.buttons[1].pressed = true")  # B: gripper open
        executed(page, "a[0] === 0 && a[2] === 0 && a[3] === -1")
        page.evaluate("window.testGamepad.buttons[1].pressed = false")
        episode = page.evaluate(f"{S}.history.find(s => s.intervention).episode")

        page.click("button[data-cmd=success]")
        page.wait_for_function(f"{S}.episodes.some(e => e.episode === {episode})", timeout=10_000)
        end = page.evaluate(f"{S}.episodes.find(e => e.episode === {episode})")
        assert end["label"] == 1 and end["success"] and end["interventions"] > 0 and end["takeovers"] == 1
        # The labelled step was the person's; the next episode is the policy's again.
        page.wait_for_function(f"{S}.state.takeover === false", timeout=10_000)
        page.wait_for_function(
            f"{S}.notices.some(n => n.startsWith('episode {episode} saved'))", timeout=30_000
        )
        sent = page.evaluate(f"{S}.sentActions")
        browser.close()
        assert not errors, errors

        # The learner gets the chunks that hold the episode, then the run stops as by Ctrl-C.
        wait_for(
            lambda: job.status().get("hil", {}).get("intervention_transitions", 0) >= end["interventions"],
            60,
            "the intervention transitions at the learner",
            job.log,
        )
        summary = job.stop()
        console.stop()

    episodes = [e for e in read_session_episodes(job.run_dir / "sessions") if e["actor_episode"] == episode]
    assert len(episodes) == 1
    saved = episodes[0]
    rows = read_episode_rows(saved).to_pydict()
    flags = np.array(rows["complementary_info.intervention"])
    actions = np.array(rows["action"])
    labels = np.array(rows["complementary_info.human_label"])
    print(
        f"episode {episode}: {len(flags)} steps, {flags.sum()} taken over; actions sent {sent}; "
        f"learner received {summary['intervention_transitions']} intervention transitions; "
        f"test took {time.monotonic() - started:.0f} s"
    )
    assert (
        summary["intervention_transitions"] == flags.sum() == end["interventions"] == saved["interventions"]
    )
    assert summary["human_labels"]["success"] == 1
    assert saved["label"] == 1 and saved["success"] and saved["length"] == len(flags) == end["length"]
    assert labels[-1] == 1 and (labels[:-1] == -1).all() and rows["next.terminated"][-1]
    # The taken-over steps are one stretch that ends the episode, and they carry the page's actions:
    # the keyboard's forward, the gamepad's up with the gripper closed by Space, then opened by B.
    first_taken = int(np.argmax(flags))
    assert flags[first_taken:].all() and not flags[:first_taken].any()
    taken = actions[flags]
    for expected in ([1, 0, 0, -1], [0, 0, 1, 1], [0, 0, 0, -1]):
        assert np.isclose(taken, expected).all(axis=1).any(), (expected, taken)
    (camera,) = saved["videos"]
    assert len(read_episode_frames(saved, camera)) == len(flags)
