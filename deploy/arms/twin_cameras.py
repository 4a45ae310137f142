"""The SO-101 twin's cameras: its scene drawn as the so101 tasks draw their observations, over ZMQ.

``TwinCameras(twin, names, endpoint)`` renders each named camera (``front``, ``wrist``: the tasks' camera
names) of the twin's scene ``fps`` times a second from a snapshot of its state, at the tasks' frame size
(``image_size``), without shadows and from decimated meshes (``striata.envs.rendering``), and publishes
every frame on a PUB socket as three parts:

1. the camera name (UTF-8);
2. a msgpack map ``{"height", "width", "seq", "t"}`` (``t``: simulated seconds of the snapshot);
3. the raw RGB bytes, row-major uint8 ``height x width x 3``.

``striata deploy --policy-camera front=zmq+tcp://HOST:PORT/front`` subscribes to one camera and keeps its
latest frame (``striata.deploy.camera.ZmqCameraStream``). A slow subscriber loses frames, never delays
the twin: the socket's high-water mark is one frame per camera.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgpack
import mujoco
import zmq

from striata.envs.rendering import make_renderer
from striata.envs.tasks.so101.env import CAMERAS

if TYPE_CHECKING:
    from striata.deploy.arms.twin import So101Twin


class TwinCameraError(ValueError):
    """A camera name the SO-101 scene does not have."""


class TwinCameras:
    """Publishes the twin's camera frames on ``endpoint`` (bound) from a thread of its own."""

    def __init__(
        self, twin: So101Twin, names: Sequence[str], endpoint: str, size: int = 64, fps: float = 30.0
    ) -> None:
        unknown = [name for name in names if name not in CAMERAS]
        if unknown:
            raise TwinCameraError(f"cameras {unknown}: the SO-101 twin has {list(CAMERAS)}")
        self.twin, self.names, self.size, self.period = twin, list(names), size, 1.0 / fps
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.SNDHWM, max(1, len(self.names)))
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.frames_sent = 0
        self._running = threading.Event()
        self._running.set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="so101-twin-cameras", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._running.clear()
        self._thread.join(5.0)
        self._socket.close()

    def _serve(self) -> None:
        try:
            # The GL context belongs to the thread that made it: the renderer is made here.
            renderer = make_renderer(self.twin.model, self.size, self.size, shadows=False)
            data = mujoco.MjData(self.twin.model)
        except BaseException as exc:  # reported by the constructor, which waits for this
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        seq = 0
        with renderer:
            while self._running.is_set():
                began = time.monotonic()
                t = self.twin.snapshot(data)
                for name in self.names:
                    renderer.update_scene(data, camera=CAMERAS[name])
                    frame = renderer.render()
                    header = msgpack.packb({"height": self.size, "width": self.size, "seq": seq, "t": t})
                    self._socket.send_multipart([name.encode(), header, frame.tobytes()])
                seq += 1
                self.frames_sent = seq
                time.sleep(max(0.0, self.period - (time.monotonic() - began)))
