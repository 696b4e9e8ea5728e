"""Feedback on an inference or an episode, validated against the configured metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from ..backends.recorder import InferenceRecorder
from ..backends.store import Store, new_id
from ..config import MetricConfig
from ..errors import InvalidRequestError, NotFoundError, ValidationError

# Always accepted, as in TensorZero: free text, and a demonstration of the ideal output.
BUILTIN_METRICS = ("comment", "demonstration")


class FeedbackService:
    """``settle_s``: how long another gateway may hold a new inference before it is in the shared
    store (its recorder's flush, twice, and a margin); 0 for one process, whose recorder is asked
    directly. A target not found whose UUIDv7 time is that recent is looked up again until then."""

    def __init__(
        self,
        store: Store,
        recorder: InferenceRecorder | None,
        metrics: dict[str, MetricConfig],
        *,
        settle_s: float = 0.0,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._metrics = metrics
        self._settle_s = settle_s

    async def submit(
        self,
        metric_name: str,
        value: Any,
        *,
        inference_id: str | None = None,
        episode_id: str | None = None,
        tags: dict[str, str] | None = None,
        dryrun: bool = False,
    ) -> str:
        """Store one feedback row and return its id; typed errors for every bad input.
        ``dryrun``: everything is checked, nothing is stored (the id is fresh)."""
        if (inference_id is None) == (episode_id is None):
            raise InvalidRequestError(
                "give exactly one of 'inference_id' or 'episode_id'", code="invalid_feedback_target"
            )
        target_type = "inference" if inference_id else "episode"
        target_id = _uuid(inference_id or episode_id or "", f"{target_type}_id")
        metric = self._metrics.get(metric_name)
        if metric is None and metric_name not in BUILTIN_METRICS:
            known = ", ".join([*BUILTIN_METRICS, *sorted(self._metrics)])
            raise NotFoundError(f"unknown metric {metric_name!r} (known: {known})", code="metric_not_found")
        _check_value(metric_name, metric, value)
        if metric is not None and metric.level != target_type:
            raise InvalidRequestError(
                f"metric {metric_name!r} is given per {metric.level}; send '{metric.level}_id'",
                code="invalid_feedback_target",
            )
        if metric_name == "demonstration" and target_type != "inference":
            raise InvalidRequestError("a demonstration applies to an inference", code="invalid_feedback_target")
        if not await self._exists(target_type, target_id):
            raise NotFoundError(f"{target_type} {target_id} not found", code=f"{target_type}_not_found")
        if dryrun:
            return str(new_id())
        return await self._store.insert_feedback(
            target_type=target_type, target_id=target_id, metric_name=metric_name, value=value, tags=tags or {}
        )

    async def _exists(self, target_type: str, target_id: str) -> bool:
        """Whether the target is recorded, or (shared store) made so recently that another
        gateway's recorder may still hold it: then looked up again until ``settle_s`` after its time."""
        settled = _made_at(target_id) + self._settle_s
        while not await self._recorded(target_type, target_id):
            left = settled - time.time()
            if left <= 0 or left > self._settle_s + 1.0:  # old, or a time from the future: not ours
                return False
            await asyncio.sleep(min(0.05, left))
        return True

    async def _recorded(self, target_type: str, target_id: str) -> bool:
        if target_type == "inference":
            if self._recorder is not None and self._recorder.is_pending(target_id):
                return True
            return await self._store.get_inference(target_id) is not None
        if self._recorder is not None and self._recorder.is_pending_episode(target_id):
            return True
        return await self._store.episode_exists(target_id)


def _made_at(target_id: str) -> float:
    """The Unix time in a UUIDv7 (its first 48 bits, milliseconds); 0 for any other version."""
    value = uuid.UUID(target_id)
    return (value.int >> 80) / 1000 if value.version == 7 else 0.0


def _uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        raise InvalidRequestError(f"'{field}' must be a UUID, got {value!r}", code="invalid_id") from None


def _check_value(name: str, metric: MetricConfig | None, value: Any) -> None:
    if metric is None:
        if name == "comment" and not isinstance(value, str):
            raise ValidationError("a 'comment' value must be a string", code="invalid_feedback_value")
        if name == "demonstration" and value is None:
            raise ValidationError("a 'demonstration' needs a value", code="invalid_feedback_value")
        return
    if metric.type == "boolean" and not isinstance(value, bool):
        raise ValidationError(f"metric {name!r} is boolean; got {value!r}", code="invalid_feedback_value")
    if metric.type == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValidationError(f"metric {name!r} is a number; got {value!r}", code="invalid_feedback_value")
