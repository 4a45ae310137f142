"""Cameras of a deployed robot: the console's view (``--intervene-camera``) and a policy's camera inputs
(``--policy-camera NAME=SOURCE``).

The robot bridge protocol carries no images, so the controller opens each camera itself:

- ``CameraStream``: OpenCV (a device index such as ``0``, a video file, or a stream URL, as LeRobot's
  OpenCV cameras do). A file plays at its own frame rate and loops: a recorded view stands in for a
  live one.
- ``ZmqCameraStream``: ``zmq+tcp://HOST:PORT/NAME``, one camera of the frames the SO-101 twin publishes
  (``striata twin so101 --cameras``; the format is in ``striata.deploy.arms.twin_cameras``).

``open_camera`` picks by the source. Each keeps only the latest frame, resized to the size asked for,
from a thread of its own, so the control loop never waits on a camera; ``age_s`` says how old it is.
"""

from __future__ import annotations

import threading
import time

import numpy as np

ZMQ_SCHEME = "zmq+"


class CameraError(RuntimeError):
    """The camera could not be opened."""


def open_camera(source: str, width: int, height: int) -> CameraStream | ZmqCameraStream:
    """The camera ``source`` names: ``zmq+tcp://HOST:PORT/NAME`` (the twin's) or an OpenCV source."""
    if source.startswith(ZMQ_SCHEME):
        return ZmqCameraStream(source, width, height)
    return CameraStream(source, width, height)


def _resized(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    if rgb.shape[:2] == (height, width):
        return rgb
    import cv2

    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


class _LatestFrame:
    """The latest frame a reader thread stored, and its age."""

    def __init__(self) -> None:
        self._latest: np.ndarray | None = None
        self._received = 0.0
        self._lock = threading.Lock()

    def latest(self) -> np.ndarray | None:
        with self._lock:
            return self._latest

    @property
    def age_s(self) -> float:
        """Seconds since the latest frame arrived (inf before the first)."""
        with self._lock:
            return time.monotonic() - self._received if self._latest is not None else float("inf")

    def _store(self, frame: np.ndarray) -> None:
        with self._lock:
            self._latest, self._received = frame, time.monotonic()


class ZmqCameraStream(_LatestFrame):
    """The latest frame of one camera the SO-101 twin publishes, RGB uint8 [height, width, 3]."""

    def __init__(self, source: str, width: int, height: int) -> None:
        import zmq

        endpoint, _, self.name = source.removeprefix(ZMQ_SCHEME).rpartition("/")
        if not endpoint.startswith("tcp://") or not self.name:
            raise CameraError(f"camera {source!r}: expected zmq+tcp://HOST:PORT/NAME")
        self.source, self.size = source, (width, height)
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, 4)
        # Bounds what a peer on that port can make this process read (a frame is ~12 KB at 64 x 64).
        self._socket.setsockopt(zmq.MAXMSGSIZE, 16 * 1024 * 1024)
        self._socket.setsockopt(zmq.SUBSCRIBE, self.name.encode())
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise CameraError(f"camera {source!r}: {exc}") from None
        super().__init__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._socket.close()

    def _read(self) -> None:
        import msgpack
        import zmq

        while not self._stop.is_set():
            if not self._socket.poll(100):
                continue
            parts = self._socket.recv_multipart(zmq.NOBLOCK)
            frame = self._decode(parts, msgpack)
            if frame is None:
                continue  # another camera whose name starts with ours, or a malformed message: skipped
            self._store(_resized(frame, *self.size))

    def _decode(self, parts: list[bytes], msgpack) -> np.ndarray | None:
        if len(parts) != 3 or parts[0] != self.name.encode():
            return None
        try:
            header = msgpack.unpackb(parts[1])
            height, width = int(header["height"]), int(header["width"])
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            return None
        if height < 1 or width < 1 or len(parts[2]) != height * width * 3:
            return None
        return np.frombuffer(parts[2], dtype=np.uint8).reshape(height, width, 3)


class CameraStream(_LatestFrame):
    """The latest frame of an OpenCV source, RGB uint8 [height, width, 3]."""

    def __init__(self, source: str, width: int, height: int) -> None:
        import cv2

        self._cv2 = cv2
        self.source = source
        self._capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not self._capture.isOpened():
            raise CameraError(f"--camera {source!r}: OpenCV cannot open it (a device index, file or URL)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self._period = 1.0 / fps if fps and fps > 0 else 0.0
        self._is_file = not source.isdigit() and "://" not in source
        self.size = (width, height)
        super().__init__()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="camera", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._capture.release()

    def _read(self) -> None:
        cv2 = self._cv2
        while not self._stop.is_set():
            began = time.monotonic()
            ok, frame = self._capture.read()
            if not ok:
                if self._is_file:  # loop a recording
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                self._stop.wait(0.1)  # a device or stream that hiccups: try again
                continue
            rgb = cv2.cvtColor(cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            self._store(rgb)
            if self._is_file:
                self._stop.wait(max(0.0, self._period - (time.monotonic() - began)))


class PolicyCameras:
    """The camera inputs of a policy that reads frames: one stream per ``metadata.cameras`` name, opened
    from ``sources`` (name -> source), each frame at the size the policy was trained on."""

    def __init__(self, names: list[str], sizes: list[list[int]], sources: dict[str, str], max_age_s: float):
        missing = [name for name in names if name not in sources]
        extra = sorted(set(sources) - set(names))
        if missing or extra:
            raise CameraError(
                f"the policy reads cameras {names}: give --policy-camera NAME=SOURCE for each"
                + (f" (missing {missing})" if missing else "")
                + (f" (not the policy's: {extra})" if extra else "")
            )
        self.max_age_s = max_age_s
        self.streams: dict[str, CameraStream | ZmqCameraStream] = {}
        try:
            for name, (height, width, _) in zip(names, sizes, strict=True):
                self.streams[name] = open_camera(sources[name], width, height)
        except BaseException:
            self.close()
            raise

    def stale(self) -> str | None:
        """Why the frames cannot feed the policy now (a camera without a frame, or one too old), or None."""
        for name, stream in self.streams.items():
            age = stream.age_s
            if age > self.max_age_s:
                return f"camera {name!r}: " + (
                    "no frame yet" if age == float("inf") else f"latest frame {age:.2f} s old"
                )
        return None

    def feed(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The policy's inputs: ``obs`` and each camera's latest frame, batched [1, H, W, 3]."""
        out = {"obs": obs}
        for name, stream in self.streams.items():
            frame = stream.latest()
            assert frame is not None, "stale() is checked before a frame is fed"
            out[name] = frame[None]
        return out

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()
