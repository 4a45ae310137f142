"""What a camera frame of the SO-101 scene costs: ``python -m striata.envs.tasks.so101.render_cost``.

Builds the pick scene with decimated and with original visual meshes and times frames from the
``front`` and ``wrist`` cameras on the same arm pose, with and without shadows and multisampling
(``BatchedEnv.render(shadows=...)``), and prints the figures as JSON: visual triangles drawn per frame,
mesh triangles, and milliseconds per frame. With ``MUJOCO_GL=egl`` on a machine without a GPU this is
Mesa's software rasteriser (llvmpipe), which is what the tasks' pixel observations cost on such a machine.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import mujoco
import numpy as np

from striata.envs.registry import make_env
from striata.envs.tasks.so101.env import CAMERAS, So101Env

CAMERA_NAMES = ("front", "wrist")


def drawn_triangles(model: mujoco.MjModel) -> int:
    """Mesh triangles the default view draws per frame (geom groups 0-2; collision geoms are group 3)."""
    visible = (model.geom_type == mujoco.mjtGeom.mjGEOM_MESH) & (model.geom_group < 3)
    return int(model.mesh_facenum[model.geom_dataid[visible]].sum())


def time_frames(env: So101Env, camera: str, size: int, shadows: bool, frames: int) -> float:
    """Milliseconds per frame of ``camera``, after one warm-up frame (which builds the renderer)."""
    env.render(CAMERAS[camera], size, size, ids=np.array([0]), shadows=shadows)
    start = time.perf_counter()
    for _ in range(frames):
        env.render(CAMERAS[camera], size, size, ids=np.array([0]), shadows=shadows)
    return 1000.0 * (time.perf_counter() - start) / frames


def measure(size: int = 64, frames: int = 20) -> dict[str, Any]:
    """Triangles and ms per frame, decimated vs original meshes, side by side on the same pose."""
    out: dict[str, Any] = {"image_size": size, "frames": frames}
    for meshes in ("original", "decimated"):
        start = time.perf_counter()
        env = make_env("so101_pick", num_envs=1, seed=0, visual_meshes=meshes)
        build_s = time.perf_counter() - start
        env.reset()
        model = env.model
        row: dict[str, Any] = {
            "build_s": round(build_s, 2),
            "mesh_triangles": int(model.mesh_facenum.sum()),
            "drawn_triangles": drawn_triangles(model),
        }
        if env.visual_mesh_report is not None:
            row["visual_mesh_triangles"] = env.visual_mesh_report.total_after
            row["visual_mesh_triangles_before"] = env.visual_mesh_report.total_before
        for camera in CAMERA_NAMES:
            for shadows in (False, True):
                key = f"{camera}_ms" + ("_shadows" if shadows else "")
                row[key] = round(time_frames(env, camera, size, shadows, frames), 2)
        env.close()
        out[meshes] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(measure(args.size, args.frames), indent=2))


if __name__ == "__main__":
    main()
