"""The ``openai`` backend: a VLM behind any OpenAI-compatible chat completions endpoint (vLLM, SGLang).

Images go out as base64 JPEG ``image_url`` parts; the prompt and the reply parser come from a
profile (``striata.reward_server.profiles``). One ``score`` call sends its inputs concurrently, at most
``concurrency`` requests in flight; transport errors, timeouts, 429 and 5xx are retried with
exponential backoff. A failed call is ``model_error``, a reply that does not parse ``parse_error``.
"""

from __future__ import annotations

import base64
import io
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
from PIL import Image

from striata.reward_server.backend import ScoreInput, ScoreOutput
from striata.reward_server.config import OpenAIBackendConfig
from striata.reward_server.profiles import PROFILES

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint failed after every retry, or answered something that is not a chat completion."""


class OpenAIBackend:
    def __init__(self, config: OpenAIBackendConfig) -> None:
        self.config = config
        self.profile = PROFILES[config.profile]
        self.modes = self.profile.modes
        self.model_id = config.model
        self.revision = f"openai:{config.profile}"  # the profile is part of the cache key
        self.max_batch = 4 * config.concurrency
        headers = {}
        if config.api_key_env:
            headers["Authorization"] = f"Bearer {os.environ.get(config.api_key_env, '')}"
        self._http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            timeout=config.timeout_s,
            headers=headers,
            limits=httpx.Limits(max_connections=config.concurrency),
        )
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="openai-backend")

    def score(self, inputs: list[ScoreInput]) -> list[ScoreOutput]:
        return list(self._pool.map(self._score_one, inputs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _score_one(self, item: ScoreInput) -> ScoreOutput:
        if item.mode not in self.profile.modes:
            allowed = ", ".join(self.profile.modes)
            return ScoreOutput("bad_request", detail=f"profile {self.profile.name!r} takes modes {allowed}")
        body = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": self.profile.content(item, self._data_url)}],
            "max_tokens": self.config.max_tokens,
            "temperature": self.config.temperature,
        }
        try:
            text = self._complete(body)
        except EndpointError as exc:
            return ScoreOutput("model_error", detail=str(exc))
        if text is None:
            return ScoreOutput("parse_error", detail="reply has no text content")
        return self.profile.parse(text, item)

    def _complete(self, body: dict[str, Any]) -> str | None:
        delay = self.config.backoff_s
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(delay)
                delay *= 2
            try:
                response = self._http.post("/chat/completions", json=body)
            except httpx.TransportError as exc:  # connect errors and timeouts
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise EndpointError(f"HTTP {response.status_code}: {response.text[:200]}")
            return _message_text(response)
        raise EndpointError(f"{self.config.retries + 1} attempts failed; last: {last}")

    def _data_url(self, image: np.ndarray) -> str:
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(
            buffer, format="JPEG", quality=self.config.jpeg_quality
        )
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _message_text(response: httpx.Response) -> str | None:
    """The first choice's text; content given as a list of parts is joined."""
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise EndpointError(f"not a chat completion ({type(exc).__name__}): {response.text[:200]}") from None
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) and content.strip() else None
