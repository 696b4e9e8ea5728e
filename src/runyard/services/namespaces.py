"""Who may use a workflow or agent-template namespace (the part of a name before ``/``).

A namespace belongs to the workspace whose store key first saved a definition in it. One first
used by a config (admin) key, by no key (auth off), or whose creator is unknown (rows older than
the owner columns) is the operator's: global, read-only to store keys. Callers confined to a
workspace (``viewer``) read, run and list their own namespaces, the operator's and
``[server] shared_namespaces``, and write only their own; a hidden name answers the same 404 as
an unknown one. ``viewer=None`` (a config key, or auth off) sees and writes everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from ..errors import NotFoundError, PermissionDeniedError

__all__ = ["Namespaces", "namespace_of"]

WorkspaceOf = Callable[[str | None], Awaitable[str | None]]


def namespace_of(name: str) -> str:
    """``acme`` for ``acme/flow@main`` (a name without ``/`` is its own namespace)."""
    return name.partition("@")[0].partition("/")[0]


async def _everything(_key_id: str | None) -> None:
    return None


class Namespaces:
    """The ownership rule, shared by the workflow store and the agent-template store."""

    def __init__(self, workspace_of: WorkspaceOf = _everything, *, shared: Iterable[str] = ()) -> None:
        """``workspace_of``: a key id's workspace (None: a config key or no key, who see all)."""
        self.workspace_of = workspace_of
        self.shared = frozenset(shared)

    async def viewer(self, api_key_id: str | None) -> str | None:
        """The workspace the key ``api_key_id`` is confined to; None when it sees everything."""
        return await self.workspace_of(api_key_id)

    def readable(self, viewer: str | None, namespace: str, owner: str | None) -> bool:
        """May ``viewer`` read / run / list names in ``namespace`` (owned by ``owner``)?"""
        return viewer is None or owner is None or owner == viewer or namespace in self.shared

    def check_read(self, viewer: str | None, namespace: str, owner: str | None, hidden: NotFoundError) -> None:
        """Raise ``hidden`` (the caller's own not-found) unless ``viewer`` may read the namespace."""
        if not self.readable(viewer, namespace, owner):
            raise hidden

    def check_write(self, viewer: str | None, namespace: str, owner: str | None, hidden: NotFoundError) -> None:
        """404 ``hidden`` for a namespace the viewer cannot see; 403 ``namespace_read_only`` for a
        global or shared one it does not own."""
        self.check_read(viewer, namespace, owner, hidden)
        if viewer is not None and owner != viewer:
            raise PermissionDeniedError(
                f"namespace {namespace!r} is shared read-only; only its owner may change it",
                code="namespace_read_only",
            )

    def check_claim(self, viewer: str | None, namespace: str, owner: str | None, *, exists: bool) -> None:
        """May ``viewer`` save a new definition into ``namespace``? 403 ``namespace_taken`` when
        another workspace (or the operator) owns it."""
        if viewer is None or not exists or owner == viewer:
            return
        raise PermissionDeniedError(
            f"namespace {namespace!r} belongs to another workspace; choose another namespace",
            code="namespace_taken",
        )
