"""The console's door: sessions, sign-in, and the CSRF check on every form.

:class:`ConsoleGate` (ASGI) runs before every ``/ui`` page: it finds the caller's session
(opening an anonymous one, for its CSRF token, if there is none), checks its key as the API
does and puts it where server/access.py reads the caller (``scope["state"]["api_key"]``), so
pages apply the API's workspace rules unchanged. Without API keys the console is open only on
a loopback bind to loopback clients, and says so on every page. :func:`form_handler` wraps
every POST: a form without its session's token is refused with 403 ``csrf_failed``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.datastructures import FormData, MutableHeaders
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...errors import AuthenticationError, PermissionDeniedError
from ...gateway import Gateway
from .render import Pages
from .session import COOKIE, SessionStore, csrf_ok, key_of, loopback_bind, set_cookie

FormHandler = Callable[[Request, FormData], Awaitable[Response]]
MAX_FORM_BYTES = 1 << 20
OPEN_PATHS = ("/ui/signin", "/ui/static/")


class ConsoleGate:
    def __init__(self, app: ASGIApp, gateway: Gateway, sessions: SessionStore, pages: Pages) -> None:
        self.app = app
        self.gateway = gateway
        self.sessions = sessions
        self.pages = pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/ui/static/"):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = scope.setdefault("state", {})
        session = self.sessions.get(request.cookies.get(COOKIE))
        fresh = session is None
        if session is None:
            session = self.sessions.open()
        state.update(console_session=session, console_csrf=session.csrf, api_key=None, api_key_id=None)
        response: Response | None = None
        auth = self.gateway.auth
        if auth.enabled:
            key = await key_of(auth, session)
            if key is not None:
                state.update(api_key=key, api_key_id=key.id, console_admin=key.admin)
            elif not scope["path"].startswith(OPEN_PATHS):
                response = RedirectResponse("/ui/signin", status_code=303)
        elif self._loopback(scope):
            state.update(console_open=True, console_admin=True)
        else:
            err = PermissionDeniedError(
                "the console is open without API keys only on a loopback bind; configure keys", code="console_closed"
            )
            response = self.pages.render(request, "error.html", status=403, error=err)
        if response is not None:
            if fresh:
                set_cookie(response, request, session)
            await response(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and fresh:
                cookie = Response()
                set_cookie(cookie, request, session)
                headers = MutableHeaders(scope=message)
                for name, value in cookie.raw_headers:
                    if name == b"set-cookie":
                        headers.append("set-cookie", value.decode("latin-1"))
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie if fresh else send)
        except Exception:  # already logged, and answered with the error page, by the crash handler
            return

    def _loopback(self, scope: Scope) -> bool:
        """A loopback bind (config) and a loopback client (or an in-process call)."""
        client = scope.get("client")
        client_ok = client is None or loopback_bind(str(client[0])) or client[0] == "testclient"
        return loopback_bind(self.gateway.config.server.host) and client_ok


def form_handler(handler: FormHandler) -> Callable[[Request], Awaitable[Response]]:
    """A POST endpoint that gets its parsed form only when the form's ``csrf`` token is right."""

    async def endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise PermissionDeniedError("form too large", code="form_too_large")
        async with request.form(max_files=0, max_fields=100) as form:
            session = request.scope["state"].get("console_session")
            if not csrf_ok(session, form.get("csrf")):
                raise PermissionDeniedError(
                    "the form's CSRF token is missing or wrong; reload the page", code="csrf_failed"
                )
            return await handler(request, form)

    endpoint.__name__ = handler.__name__
    return endpoint


def require_admin(request: Request) -> None:
    if not request.scope["state"].get("console_admin"):
        raise PermissionDeniedError("this page needs a config (admin) key", code="admin_required")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


async def signin_page(request: Request) -> Response:
    pages: Pages = request.app.state.pages
    return pages.render(request, "signin.html")


async def signin(request: Request, form: FormData) -> Response:
    """Check the key as the API would; on success a new session (fresh id: no fixation)."""
    gw: Gateway = request.app.state.gateway
    pages: Pages = request.app.state.pages
    sessions: SessionStore = request.app.state.sessions
    secret = str(form.get("key") or "").strip()
    try:
        key = await gw.auth.lookup(f"Bearer {secret}") if secret else None
    except AuthenticationError:
        key = None
    if key is None:
        err = AuthenticationError("that API key is not valid", code="invalid_api_key")
        return pages.render(request, "signin.html", status=401, error=err)
    old = request.scope["state"].get("console_session")
    if old is not None:
        sessions.close(old.id)
    session = sessions.open(secret)
    response = redirect("/ui")
    set_cookie(response, request, session)
    return response


async def signout(request: Request, _form: FormData) -> Response:
    sessions: SessionStore = request.app.state.sessions
    session = request.scope["state"].get("console_session")
    if session is not None:
        sessions.close(session.id)
    response = redirect("/ui/signin")
    response.delete_cookie(COOKIE, path="/ui")
    return response
