"""A camera beside the robot for the console's view of a deployed robot (`striata deploy --camera`).

The robot bridge protocol carries no images, so the controller opens the camera itself through
OpenCV (a device index such as ``0``, a video file, or a stream URL, as LeRobot's OpenCV cameras
do). A thread reads frames and keeps only the latest, resized for the console, so the control loop
never waits on the camera. A file plays at its own frame rate and loops: a recorded view stands in
for a live one.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class CameraError(RuntimeError):
    """The camera could not be opened."""


class CameraStream:
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
        self._latest: np.ndarray | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="camera", daemon=True)
        self._thread.start()

    def latest(self) -> np.ndarray | None:
        with self._lock:
            return self._latest

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
            with self._lock:
                self._latest = rgb
            if self._is_file:
                self._stop.wait(max(0.0, self._period - (time.monotonic() - began)))
