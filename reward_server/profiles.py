"""Prompt + parser profiles for VLM reward models behind a chat endpoint.

Each profile builds the chat ``content`` (text and ``image_url`` parts) for one request and parses
the model's reply. A reply that does not follow the profile's format is ``parse_error`` with NaN
values, never a default score.

- ``roboreward``: RoboReward-4B/8B (Qwen3-VL). Episode score 1-5 from a rollout's frames, reply
  ``ANSWER: <n>``; progress = (n - 1) / 4, done_prob = 1 for a 5.
- ``robodopamine``: Robo-Dopamine GRM. Pairwise hop between a BEFORE set (reference frames) and an
  AFTER set (frames), with optional reference START/END anchors (reference cameras ``anchor_start``,
  ``anchor_end``); reply ``<score>+NN%</score>`` or negative. delta = hop; progress is rebuilt from
  hops with ``accumulate_hop`` (in ``progress`` mode BEFORE is the episode's first frame, phi = 0).
- ``vlac``: VLAC-style pairwise critic: progress delta from BEFORE to AFTER and whether the task is
  done; reply lines ``DELTA: +NN%`` and ``DONE: yes|no``.
- ``progress``: generic per-frame progress (LRM/Robometer-like prompting of any VLM); reply lines
  ``PROGRESS: NN%`` and optionally ``SUCCESS: yes|no``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from striata.reward_server.backend import ScoreInput, ScoreOutput

ImageEncoder = Callable[[np.ndarray], str]  # uint8 [H, W, 3] -> data URL
ANCHORS = ("anchor_start", "anchor_end")


def accumulate_hop(phi: float, hop: float) -> float:
    """Robo-Dopamine's update: a gain takes a share of what remains, a loss a share of what was done."""
    return phi + (1.0 - phi) * hop if hop >= 0 else phi + phi * hop


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def _views(label: str, frames: dict[str, np.ndarray], encode: ImageEncoder) -> list[dict]:
    parts: list[dict] = []
    for camera in sorted(frames):
        parts += [_text(f"\n{label} {camera} image: "), _image(encode(frames[camera]))]
    return parts


def _before(item: ScoreInput) -> dict[str, np.ndarray]:
    return {k: v for k, v in item.reference_frames.items() if k not in ANCHORS}


def _percent(pattern: re.Pattern[str], text: str, low: float, high: float) -> float | None:
    matches = pattern.findall(text)
    if not matches:
        return None
    value = float(matches[-1])
    return value / 100 if low <= value <= high else None


def _yes_no(pattern: re.Pattern[str], text: str) -> float | None:
    matches = pattern.findall(text)
    return None if not matches else (1.0 if matches[-1].lower() == "yes" else 0.0)


def _parse_error(text: str, expected: str) -> ScoreOutput:
    return ScoreOutput("parse_error", detail=f"expected {expected}; got {text[:200]!r}")


@dataclass(frozen=True)
class Profile:
    name: str
    modes: tuple[str, ...]
    content: Callable[[ScoreInput, ImageEncoder], list[dict]]
    parse: Callable[[str, ScoreInput], ScoreOutput]


# ---------------------------------------------------------------- RoboReward
ROBOREWARD_PROMPT = """Given the task, assign a discrete progress score reward (1,2,3,4,5) for the robot \
in the video in the format: ANSWER: <score>
Rubric for end-of-episode progress (judge only the final state without time limits):
1 - No Success: Final state shows no goal-relevant change for the command.
2 - Minimal Progress: Final state shows a small but insufficient change toward the goal.
3 - Partial Completion: The final state shows good progress toward the goal but violates more than one \
requirement or a major requirement.
4 - Near Completion: Final state is correct in region and intent but misses a single minor requirement.
5 - Perfect Completion: Final state satisfies all requirements.
Task: {task}"""
ROBOREWARD_ANSWER = re.compile(r"ANSWER:\s*\**\s*(\d+)\b", re.IGNORECASE)


def _roboreward_content(item: ScoreInput, encode: ImageEncoder) -> list[dict]:
    # Earlier frames of the episode come as reference frames, in camera-name order (e.g. "front/000").
    frames = [encode(item.reference_frames[k]) for k in sorted(item.reference_frames)]
    frames += [encode(item.frames[k]) for k in sorted(item.frames)]
    return [*(_image(url) for url in frames), _text(ROBOREWARD_PROMPT.format(task=item.task))]


def _roboreward_parse(text: str, item: ScoreInput) -> ScoreOutput:
    matches = ROBOREWARD_ANSWER.findall(text)
    if not matches or not 1 <= int(matches[-1]) <= 5:
        return _parse_error(text, "'ANSWER: <1-5>'")
    score = int(matches[-1])
    return ScoreOutput(
        progress=(score - 1) / 4, done_prob=1.0 if score == 5 else 0.0, detail=f"score {score}"
    )


# ---------------------------------------------------------------- Robo-Dopamine GRM
GRM_INTRO = """You are a rigorous, impartial vision evaluator for robot task progress. Judge whether the \
AFTER image set moves closer to the task objective than the BEFORE image set, using the reference examples \
only as anchors.
Task: {task}"""
GRM_OUTPUT = """Compare BEFORE and AFTER. AFTER better than BEFORE -> positive score; worse -> negative; \
essentially the same -> 0. For an improvement, scale it relative to what remained from BEFORE to the end; \
for a regression, relative to how far BEFORE had progressed from the start. Give an integer percentage in \
[-100%, +100%].
Output Format (STRICT): return ONLY one line with the score in <score> tags:
<score>+NN%</score>  or  <score>-NN%</score>  or  <score>0%</score>"""
GRM_SCORE = re.compile(r"<score>\s*([+-]?\d+(?:\.\d+)?)\s*%\s*</score>")


def _grm_content(item: ScoreInput, encode: ImageEncoder) -> list[dict]:
    parts = [_text(GRM_INTRO.format(task=item.task))]
    for anchor, label in zip(ANCHORS, ("REFERENCE START", "REFERENCE END"), strict=True):
        if anchor in item.reference_frames:
            parts += [_text(f"\n{label} image: "), _image(encode(item.reference_frames[anchor]))]
    parts += _views("BEFORE", _before(item), encode)
    parts += _views("AFTER", item.frames, encode)
    return [*parts, _text("\n\n" + GRM_OUTPUT)]


def _grm_parse(text: str, item: ScoreInput) -> ScoreOutput:
    hop = _percent(GRM_SCORE, text, -100, 100)
    if hop is None:
        return _parse_error(text, "'<score>+NN%</score>' within [-100%, +100%]")
    progress = accumulate_hop(0.0, hop) if item.mode == "progress" else math.nan
    return ScoreOutput(delta=hop, progress=progress)


# ---------------------------------------------------------------- VLAC-style pairwise critic
VLAC_PROMPT = """You are a critic for robot manipulation. Task: {task}
Compare the BEFORE and AFTER images. Estimate how much the task progressed from BEFORE to AFTER as a \
percentage of the whole task (negative if it regressed), and whether the task is done in AFTER.
Reply with exactly two lines:
DELTA: <+NN% or -NN%>
DONE: <yes or no>"""
VLAC_DELTA = re.compile(r"DELTA:\s*([+-]?\d+(?:\.\d+)?)\s*%", re.IGNORECASE)
VLAC_DONE = re.compile(r"DONE:\s*(yes|no)\b", re.IGNORECASE)


def _vlac_content(item: ScoreInput, encode: ImageEncoder) -> list[dict]:
    parts = _views("BEFORE", _before(item), encode) + _views("AFTER", item.frames, encode)
    return [*parts, _text("\n" + VLAC_PROMPT.format(task=item.task))]


def _vlac_parse(text: str, item: ScoreInput) -> ScoreOutput:
    delta = _percent(VLAC_DELTA, text, -100, 100)
    done = _yes_no(VLAC_DONE, text)
    if delta is None or done is None:
        return _parse_error(text, "'DELTA: +NN%' and 'DONE: yes|no'")
    return ScoreOutput(delta=delta, done_prob=done)


# ---------------------------------------------------------------- generic per-frame progress
PROGRESS_PROMPT = """Task: {task}
Look at the robot's current camera image(s). Estimate how far the task is completed, from 0% (not started) \
to 100% (fully done), and whether it has succeeded.
Reply with exactly two lines:
PROGRESS: <NN%>
SUCCESS: <yes or no>"""
PROGRESS_VALUE = re.compile(r"PROGRESS:\s*(\d+(?:\.\d+)?)\s*%", re.IGNORECASE)
PROGRESS_SUCCESS = re.compile(r"SUCCESS:\s*(yes|no)\b", re.IGNORECASE)


def _progress_content(item: ScoreInput, encode: ImageEncoder) -> list[dict]:
    return [*_views("CURRENT", item.frames, encode), _text("\n" + PROGRESS_PROMPT.format(task=item.task))]


def _progress_parse(text: str, item: ScoreInput) -> ScoreOutput:
    progress = _percent(PROGRESS_VALUE, text, 0, 100)
    if progress is None:
        return _parse_error(text, "'PROGRESS: NN%' within [0%, 100%]")
    done = _yes_no(PROGRESS_SUCCESS, text)
    return ScoreOutput(progress=progress, done_prob=math.nan if done is None else done)


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile("roboreward", ("episode_score", "success"), _roboreward_content, _roboreward_parse),
        Profile("robodopamine", ("pairwise_delta", "progress"), _grm_content, _grm_parse),
        Profile("vlac", ("pairwise_delta",), _vlac_content, _vlac_parse),
        Profile("progress", ("progress", "success"), _progress_content, _progress_parse),
    )
}
