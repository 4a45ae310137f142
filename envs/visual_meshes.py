"""Decimated visual meshes: a robot's CAD meshes reduced for software rendering, collisions untouched
(the SO-101's camera tasks, the G1's evaluation videos).

The asset's 13 STL meshes hold 322k triangles (399k drawn per frame: the servo mesh shows five times),
which software OpenGL draws at tens of milliseconds per 64x64 frame. Every geom that only shows
(``contype = conaffinity = 0``) is pointed at a copy of its mesh reduced to ``max_faces`` triangles;
collision geoms keep the original mesh, so contacts and physics are those of the asset. Meshes no geom
uses any more are dropped, which also saves their parsing.

Reduction is two steps. Quadric edge collapse (``fast-simplification``) alone stalls on these CAD meshes
at about a third of their triangles: they are full of slivers, and a collapse that leaves a sliver is
refused. So vertices are first merged on a ``CLUSTER_SIZE`` grid (vertex clustering, which removes the
slivers and the sub-millimetre detail no camera of the tasks resolves), then edge collapse brings each
mesh to its budget.

With 1,500 triangles a mesh, a frame draws 25k triangles instead of 399k; on the 2-core development
machine (Mesa llvmpipe, 64x64, no shadows or multisampling, other jobs running) a ``front`` frame took
2.5 ms instead of 103 ms and a ``wrist`` frame 1.4 ms instead of 23 ms
(``python -m striata.envs.tasks.so101.render_cost`` measures both side by side).

Decimated meshes are cached as NPZ under ``$STRIATA_CACHE/meshes`` (default ``~/.cache/striata``), keyed
by the source file's bytes and the triangle budget: the first build of a scene decimates (about a second
for the SO-101), later builds read the cache.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from striata.common.files import atomic_write

CACHE_VERSION = 1
CLUSTER_SIZE = 0.001  # m: detail below this is invisible at the tasks' resolutions (a pixel is >= 2 mm)
CACHE_ENV = "STRIATA_CACHE"
VISUAL_SUFFIX = "_visual"


@dataclass(frozen=True)
class DecimationReport:
    """Triangles of the visual meshes before and after, per mesh name, and where the cache is."""

    faces_before: dict[str, int]
    faces_after: dict[str, int]
    cache_dir: Path

    @property
    def total_before(self) -> int:
        return sum(self.faces_before.values())

    @property
    def total_after(self) -> int:
        return sum(self.faces_after.values())


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "striata")) / "meshes"


def read_binary_stl(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Welded vertices [V, 3] (float64) and triangles [F, 3] (int64) of a binary STL file."""
    raw = path.read_bytes()
    if len(raw) < 84:
        raise ValueError(f"{path}: too short for a binary STL")
    count = int(np.frombuffer(raw, dtype="<u4", count=1, offset=80)[0])
    if len(raw) != 84 + 50 * count:
        raise ValueError(f"{path}: not a binary STL ({len(raw)} bytes for {count} triangles)")
    record = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    corners = np.frombuffer(raw, dtype=record, count=count, offset=84)["vertices"].reshape(-1, 3)
    # STL repeats each shared corner in every triangle; the decimator needs them shared.
    vertices, index = np.unique(corners, axis=0, return_inverse=True)
    return vertices.astype(np.float64), index.reshape(-1, 3).astype(np.int64)


def decimate_file(path: Path, max_faces: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(vertices, faces, faces of the source) of ``path`` reduced to at most ``max_faces``, from the cache
    when this file was reduced to this budget before."""
    data = path.read_bytes()
    digest = hashlib.sha256(data)
    digest.update(repr((CACHE_VERSION, CLUSTER_SIZE, max_faces)).encode())
    cached = cache_dir() / f"{path.stem}-{digest.hexdigest()[:16]}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as npz:
            return npz["vertices"], npz["faces"], int(npz["source_faces"])
    vertices, faces = read_binary_stl(path)
    source_faces = len(faces)
    if source_faces > max_faces:
        vertices, faces = cluster_vertices(vertices, faces, CLUSTER_SIZE)
    if len(faces) > max_faces:
        import fast_simplification  # a training dependency (striata[train]); a robot computer never renders

        vertices, faces = fast_simplification.simplify(vertices, faces, target_count=max_faces)
        vertices, faces = _drop_unused(vertices, faces)
    arrays = {
        "vertices": vertices.astype(np.float64),
        "faces": faces.astype(np.int64),
        "source_faces": np.array(source_faces),
    }
    atomic_write(cached, lambda f: np.savez(f, **arrays))
    return arrays["vertices"], arrays["faces"], source_faces


def cluster_vertices(vertices: np.ndarray, faces: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering: vertices in one ``size`` grid cell merged at their mean, triangles that collapse
    to a line or a point and repeated triangles dropped."""
    _, cell, counts = np.unique(
        np.floor(vertices / size).astype(np.int64), axis=0, return_inverse=True, return_counts=True
    )
    cell = cell.ravel()
    merged = np.zeros((len(counts), 3))
    np.add.at(merged, cell, vertices)
    merged /= counts[:, None]
    faces = cell[faces]
    kept = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[kept]
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    return _drop_unused(merged, faces[np.sort(first)])


def _drop_unused(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices no face uses removed, faces renumbered: the cache and the model hold only what is drawn."""
    used, index = np.unique(faces, return_inverse=True)
    return vertices[used], index.reshape(-1, 3)


def _is_visual(geom: mujoco.MjsGeom) -> bool:
    return geom.type == mujoco.mjtGeom.mjGEOM_MESH and geom.contype == 0 and geom.conaffinity == 0


def decimate_visual_meshes(spec: mujoco.MjSpec, max_faces: int, drop_unused: bool = True) -> DecimationReport:
    """Point every visual-only mesh geom of ``spec`` at a copy of its mesh with at most ``max_faces``
    triangles; collision geoms keep theirs. Meshes whose file is not a binary STL are left as they are.
    ``drop_unused``: delete the meshes no geom uses any more (MuJoCo refuses that in some models, the
    G1's among them; they then stay, parsed but not drawn)."""
    geoms = [g for g in spec.geoms if _is_visual(g)]
    folder = Path(spec.modelfiledir) / (spec.meshdir or "")
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    for name in sorted({g.meshname for g in geoms}):
        mesh = spec.mesh(name)
        path = folder / mesh.file
        if path.suffix.lower() != ".stl":
            continue
        try:
            vertices, faces, source_faces = decimate_file(path, max_faces)
        except ValueError:  # an ASCII STL: MuJoCo reads it, this reader does not; it is drawn as it is
            continue
        spec.add_mesh(
            name=name + VISUAL_SUFFIX,
            uservert=vertices.ravel().tolist(),
            userface=faces.ravel().tolist(),
            scale=list(mesh.scale),
            # A reduced CAD mesh need not be closed; its volume is not needed (bodies give inertials).
            inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_SHELL,
        )
        before[name] = source_faces
        after[name] = len(faces)
    for geom in geoms:
        if geom.meshname in after:
            geom.meshname = geom.meshname + VISUAL_SUFFIX
    used = {g.meshname for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH}
    for mesh in list(spec.meshes) if drop_unused else []:
        if mesh.name not in used:
            spec.delete(mesh)
    return DecimationReport(before, after, cache_dir())
