"""Who sees what: one rule for every resource read by id and every listing.

Without API keys, everything is visible; a config key (``server.api_keys``, the operator's)
sees everything; a store key sees what a key of its own workspace created (revoked keys
included). A resource with no owner key, or created by a config key, is the operator's only.
A hidden resource answers the same 404 as an unknown id, so its existence does not leak.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..errors import NotFoundError, SessionNotFoundError
from ..files import parse_file_ref
from ..services.auth import ApiKey
from ..services.files import FileRecord
from .http import gateway


def caller(request: Request) -> ApiKey | None:
    """The authenticated key, or None when auth is off (or for signed protocol calls)."""
    key: ApiKey | None = (request.scope.get("state") or {}).get("api_key")
    return key


def scope_workspace(request: Request) -> str | None:
    """The workspace the caller is confined to; None when it sees everything."""
    key = caller(request)
    return None if key is None or key.admin else key.workspace


async def visible(request: Request, owner_key_id: str | None) -> bool:
    """Whether the caller may see a resource created by ``owner_key_id``."""
    workspace = scope_workspace(request)
    if workspace is None:
        return True
    return await gateway(request).auth.workspace_of(owner_key_id) == workspace


async def require(request: Request, owner_key_id: str | None, error: NotFoundError) -> None:
    """Raise ``error`` (the route's own not-found) unless the caller may see the resource."""
    if not await visible(request, owner_key_id):
        raise error


async def check_task(request: Request, task_id: str) -> None:
    """404 ``task_not_found`` for another workspace's task; an unknown id is left to the route."""
    if scope_workspace(request) is None:
        return
    task = await gateway(request).tasks.queue.get(task_id)
    if task is not None:
        await require(request, task.api_key_id, NotFoundError(f"task {task_id} not found", code="task_not_found"))


async def path_task_id(request: Request) -> str:
    """The request's ``task_id`` path parameter, once :func:`check_task` has let it through."""
    task_id: str = request.path_params["task_id"]
    await check_task(request, task_id)
    return task_id


async def check_session(request: Request, session_id: str) -> None:
    """404 ``session_not_found`` for a session opened by another workspace's run."""
    if scope_workspace(request) is None:
        return
    queue = gateway(request).tasks.queue
    if await queue.get_session(session_id) is not None:
        owner = await queue.session_owner(session_id)
        await require(request, owner, SessionNotFoundError(f"session {session_id} not found"))


async def check_file(request: Request, record: FileRecord, file_id: str | None = None) -> None:
    """404 ``file_not_found`` for another workspace's file."""
    error = NotFoundError(f"file {file_id or record.id!r} not found", code="file_not_found")
    await require(request, record.api_key_id, error)


async def check_chat(request: Request, chat: dict[str, Any]) -> None:
    """404 ``chat_not_found`` for another workspace's agent chat."""
    error = NotFoundError(f"chat {chat['id']} not found", code="chat_not_found")
    await require(request, chat.get("api_key_id"), error)


async def check_file_refs(request: Request, value: Any) -> None:
    """404 ``file_not_found`` when ``value`` (JSON, walked) references another workspace's file;
    unknown refs are left to the code that resolves them."""
    if scope_workspace(request) is None:
        return
    files = gateway(request).files
    for file_id in sorted(_refs(value)):
        try:
            record = await files.get(file_id)
        except NotFoundError:
            continue
        await check_file(request, record, file_id)


def _refs(value: Any, found: set[str] | None = None) -> set[str]:
    found = set() if found is None else found
    if isinstance(value, str):
        if (file_id := parse_file_ref(value)) is not None:
            found.add(file_id)
    elif isinstance(value, dict):
        for item in value.values():
            _refs(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _refs(item, found)
    return found
