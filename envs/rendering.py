"""Offscreen renderers as the tasks' camera observations are drawn: one place for how a frame looks.

``make_renderer(model, height, width, shadows)`` is what ``BatchedEnv.render`` draws env frames with and
what the SO-101 twin (``striata.deploy.arms.twin``) serves its cameras with, so a policy deployed on the
twin sees frames drawn as in training. ``shadows=False`` turns shadows, reflections and multisampling
off: with software OpenGL each shadow-casting light costs a full pass, and a 4x-multisampled frame about
twice a plain one.
"""

from __future__ import annotations

import mujoco


def make_renderer(model: mujoco.MjModel, height: int, width: int, shadows: bool) -> mujoco.Renderer:
    """A renderer of ``model`` for frames of ``height`` x ``width``; make it on the thread that renders."""
    samples = model.vis.quality.offsamples
    if not shadows:
        model.vis.quality.offsamples = 0
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
    finally:
        model.vis.quality.offsamples = samples
    if not shadows:
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return renderer
