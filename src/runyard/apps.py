"""The public app API: ``@runyard.app("acme/upscale", version="1.0.0")`` on a function or a class.

A function app is ``def run(input: In, ctx: AppContext) -> Out`` (sync or async; ``ctx`` optional).
A class app has ``setup(self, config)`` (called once per instance with the run's hidden ``setup``)
and ``run(self, input, ctx)``. ``In``/``Out`` are pydantic models (or any type pydantic can
validate); their JSON Schemas are served at ``GET /v1/apps/{ref}``. Sync code runs in a thread.

Modules listed in ``[apps] modules`` are imported at start; every decorated object in them is
registered. ``requirements`` name what an app needs, as ``"secret:KEY"``, ``"integration:NAME"``
or ``{"type": ..., "key": ...}``; a run with any missing fails with ``REQUIREMENTS_NOT_MET``.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel, TypeAdapter, create_model

__all__ = ["AppContext", "AppDefinition", "Requirement", "TaskCancelled", "app", "parse_version", "version_key"]

T = TypeVar("T")
ATTR = "__runyard_app__"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")
VERSION_RE = re.compile(r"^\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$")


class TaskCancelled(Exception):
    """Raised by :meth:`AppContext.check_cancelled` once the task was cancelled."""


@dataclass(frozen=True, slots=True)
class Requirement:
    type: str  # "secret" | "integration"
    key: str

    @classmethod
    def parse(cls, value: str | Mapping[str, str] | Requirement) -> Requirement:
        if isinstance(value, Requirement):
            return value
        if isinstance(value, Mapping):
            return cls(str(value["type"]), str(value["key"]))
        kind, sep, key = value.partition(":")
        return cls(kind, key) if sep else cls("secret", value)

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "key": self.key}


class AppContext:
    """What a running app sees: logging, progress, cancellation, its secrets and the AI runtime.

    Methods are safe to call from the app's thread (sync apps) or its event loop (async apps).
    """

    def __init__(
        self,
        *,
        task_id: str,
        app: str,
        attempt: int = 1,
        session_id: str | None = None,
        secrets: Mapping[str, str] | None = None,
        emit: Callable[[str, dict[str, Any]], None] | None = None,
        ai: Any = None,
    ) -> None:
        self.task_id = task_id
        self.app = app
        self.attempt = attempt
        self.session_id = session_id
        self.secrets: Mapping[str, str] = dict(secrets or {})
        self.ai = ai  # the gateway's AIService (chat/embed), when run by a gateway
        self._emit = emit or (lambda _kind, _data: None)
        self._cancel = threading.Event()

    def log(self, message: str) -> None:
        """Append a log line to the task (streamed to subscribers, kept with the task)."""
        self._emit("log", {"message": str(message)})

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1] (clamped), with an optional message."""
        value = min(1.0, max(0.0, float(fraction)))
        self._emit("progress", {"progress": value, "message": message})

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` if the task was cancelled (call it between steps)."""
        if self._cancel.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def _set_cancelled(self) -> None:
        self._cancel.set()


@dataclass(slots=True)
class AppDefinition:
    """A registered app: identity, schemas and how to call it."""

    name: str
    version: str
    target: Any
    is_class: bool
    description: str = ""
    requirements: list[Requirement] = field(default_factory=list)
    pool: str | None = None
    input_type: Any = dict[str, Any]
    output_type: Any = Any
    setup_type: Any = None
    ctx_param: str | None = "ctx"
    spread: bool = False
    _adapters: dict[str, TypeAdapter[Any]] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def adapter(self, which: str) -> TypeAdapter[Any]:
        if which not in self._adapters:
            self._adapters[which] = TypeAdapter(getattr(self, f"{which}_type"))
        return self._adapters[which]

    def input_schema(self) -> dict[str, Any]:
        return self.adapter("input").json_schema()

    def output_schema(self) -> dict[str, Any]:
        return self.adapter("output").json_schema()

    def validate_input(self, data: Any) -> Any:
        """The input as the app's input type (raises pydantic's ValidationError)."""
        return self.adapter("input").validate_python(data)

    def call_args(self, value: Any, ctx: AppContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments for the run function, from the validated input."""
        kwargs = {name: getattr(value, name) for name in type(value).model_fields} if self.spread else {}
        if self.ctx_param is not None:
            kwargs[self.ctx_param] = ctx
        return (() if self.spread else (value,)), kwargs

    def dump_output(self, value: Any) -> Any:
        return self.adapter("output").dump_python(value, mode="json")

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.ref,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "kind": "class" if self.is_class else "function",
            "sessions": self.is_class,
            "requirements": [r.to_dict() for r in self.requirements],
            "pool": self.pool,
            "input_schema": self.input_schema(),
            "output_schema": self.output_schema(),
        }


def app(
    name: str,
    *,
    version: str = "0.1.0",
    description: str | None = None,
    requirements: list[str | Mapping[str, str] | Requirement] | None = None,
    pool: str | None = None,
) -> Callable[[T], T]:
    """Declare a function or class as the app ``namespace/name`` at ``version``."""
    if not NAME_RE.match(name):
        raise ValueError(f"app name {name!r} must be 'namespace/name' (lowercase letters, digits, . _ -)")
    parse_version(version)

    def decorate(target: T) -> T:
        is_class = inspect.isclass(target)
        run = getattr(target, "run", None) if is_class else target
        if not callable(run):
            raise TypeError(f"app {name}: a class app needs a run(self, input, ctx) method")
        model_name = "".join(part.title() for part in re.split(r"[/._-]", name)) + "Input"
        input_type, output_type, ctx_param, spread = _signature(run, skip_self=is_class, model_name=model_name)
        setup_type = None
        setup = getattr(target, "setup", None) if is_class else None
        if callable(setup):
            setup_params = list(inspect.signature(setup).parameters.values())[1:]
            with contextlib.suppress(Exception):
                setup_type = get_type_hints(setup).get(setup_params[0].name) if setup_params else None
        definition = AppDefinition(
            name=name,
            version=version,
            target=target,
            is_class=is_class,
            description=description or inspect.getdoc(target) or "",
            requirements=[Requirement.parse(r) for r in requirements or []],
            pool=pool,
            input_type=input_type,
            output_type=output_type,
            setup_type=setup_type,
            ctx_param=ctx_param,
            spread=spread,
        )
        definition.input_schema()  # fail at import time, not at the first run
        definition.output_schema()
        setattr(target, ATTR, definition)
        return target

    return decorate


def _signature(fn: Callable[..., Any], *, skip_self: bool, model_name: str) -> tuple[Any, Any, str | None, bool]:
    """(input type, output type, ctx parameter name, spread?) of an app's run function.

    One data parameter typed as a pydantic model (or ``dict`` / unannotated) receives the
    whole input; several (``def f(image: File, scale: int = 2)``) become the fields of a
    generated input model and are passed as keywords ("spread"). The context parameter is
    the one annotated :class:`AppContext` or named ``ctx``.
    """
    params = list(inspect.signature(fn).parameters.values())
    if skip_self and params:
        params = params[1:]
    try:
        hints = get_type_hints(fn)
    except Exception:  # unresolvable forward references: fall back to plain JSON
        hints = {}
    ctx_name = next((p.name for p in params if hints.get(p.name) is AppContext), None)
    if ctx_name is None and any(p.name == "ctx" for p in params):
        ctx_name = "ctx"
    data = [p for p in params if p.name != ctx_name and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    output_type = hints.get("return", Any)
    if output_type is type(None):
        output_type = Any
    if len(data) == 1:
        tp = hints.get(data[0].name, dict[str, Any])
        if is_model(tp) or tp in (dict, dict[str, Any]):
            return tp, output_type, ctx_name, False
    fields: dict[str, Any] = {
        p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default) for p in data
    }
    return create_model(model_name, **fields), output_type, ctx_name, True


def parse_version(version: str) -> tuple[Any, ...]:
    if not VERSION_RE.match(version):
        raise ValueError(f"version {version!r} is not semver-like (e.g. 1.0.0)")
    return version_key(version)


def version_key(version: str) -> tuple[Any, ...]:
    """Semver ordering: numeric parts compared as numbers; a pre-release sorts before its release."""
    core, sep, pre = version.partition("-")
    core = core.partition("+")[0]
    nums = [int(p) if p.isdigit() else 0 for p in core.split(".")]
    nums += [0] * (3 - len(nums))
    pre_key: tuple[Any, ...] = (
        (1,) if not sep else (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    )
    return (*nums, pre_key)


def definition_of(obj: Any) -> AppDefinition | None:
    definition = getattr(obj, ATTR, None)
    return definition if isinstance(definition, AppDefinition) else None


def is_model(tp: Any) -> bool:
    return inspect.isclass(tp) and issubclass(tp, BaseModel)
