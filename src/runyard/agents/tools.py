"""The tools an agent's calls run server-side: internal ones (plan, memory, code_execution,
load_skill, image_generation), app tools (a task) and webhook tools (a signed POST).

Sub-agent tools are the loop's own (:meth:`runyard.agents.loop.AgentLoop.run_tool`); client tools
are run by the caller.
"""

from __future__ import annotations

import base64
import time
from typing import TYPE_CHECKING, Any

import orjson

from ..inference import ImageRequest
from ..services.files import FileService
from ..services.media import MediaService
from ..services.tasks import TaskRunner
from ..services.urlguard import Resolver, check_url, guarded_transport
from ..services.webhooks import WebhookSender
from ..telemetry import tracing
from .chats import ChatStore
from .config import AgentConfig, ToolSpec
from .sandbox import run_code
from .web_search import SearxngSearch

if TYPE_CHECKING:
    import httpx

__all__ = ["ServerTools"]


class ServerTools:
    def __init__(
        self,
        chats: ChatStore,
        media: MediaService,
        files: FileService,
        tasks: TaskRunner,
        webhooks: WebhookSender,
        *,
        secrets: dict[str, str],
        allow_private: bool = False,
        resolver: Resolver | None = None,
        search: SearxngSearch | None = None,
    ) -> None:
        """``webhooks``: signs webhook tools' calls (Standard Webhooks); ``secrets``: the named
        secrets a tool may sign with instead; ``allow_private``: tools may call private addresses;
        ``resolver``: how skill and tool hosts are looked up (None: the system's). Every fetch
        connects through the URL guard, to the address it checked. ``search``: the ``web_search``
        provider (none configured: the tool is not offered)."""
        self.search = search
        self.chats = chats
        self.media = media
        self.files = files
        self.tasks = tasks
        self.webhooks = webhooks
        self.secrets = secrets
        self.allow_private = allow_private
        self.resolver = resolver
        self._skill_cache: dict[str, str] = {}

    async def run(
        self, chat: dict[str, Any], call: dict[str, Any], spec: ToolSpec | None, api_key_id: str | None
    ) -> Any:
        """The result of one call (``spec`` ``None``: an internal tool); may raise."""
        args = call["arguments"]
        if spec is None:
            return await self._internal(chat, call, args)
        if spec.type == "app":
            return await self._app_tool(spec, args, api_key_id, call)
        if spec.type == "webhook":
            return await self._webhook_tool(spec, args, call)
        return {"error": "client_tool", "message": "client tools are run by the caller"}

    async def _internal(self, chat: dict[str, Any], call: dict[str, Any], args: dict[str, Any]) -> Any:
        name = call["name"]
        if name == "plan":
            todos = args.get("todos") or []
            chat["plan"] = [
                {"title": str(t.get("title", "")), "done": bool(t.get("done", False))}
                for t in todos
                if isinstance(t, dict)
            ]
            return {"plan": chat["plan"]}
        if name == "memory":
            return await self.chats.memory(chat, args)
        if name == "code_execution":
            return await run_code(str(args.get("code", "")))
        if name == "load_skill":
            return await self._load_skill(chat, str(args.get("name", "")))
        if name == "image_generation":
            return await self._image(chat, call, str(args.get("prompt", "")))
        if name == "web_search":
            if self.search is None:
                return {"error": "web_search_unavailable", "message": "no web search provider is configured"}
            return await self.search.search(str(args.get("query", "")))
        return {"error": "unknown_tool", "message": f"no tool named {name!r}"}

    async def _image(self, chat: dict[str, Any], call: dict[str, Any], prompt: str) -> Any:
        gen = AgentConfig.model_validate(chat["config"]).internal_tools.image_generation
        assert gen is not None
        if gen.app:
            spec = ToolSpec(name="image_generation", type="app", app=gen.app, setup=gen.setup, input=gen.input)
            return await self._app_tool(spec, {"prompt": prompt}, chat.get("api_key_id"), call)
        result = await self.media.generate_image(ImageRequest(model=gen.model, prompt=prompt, **gen.input))
        images = []
        for image in result.images:
            if image.get("b64_json"):
                data, owner = base64.b64decode(image["b64_json"]), chat.get("api_key_id")
                record = await self.files.put(data, "image.png", "image/png", api_key_id=owner)
                images.append({"uri": record.uri})
            elif image.get("url"):
                images.append({"url": image["url"]})
        return {"images": images, "model": result.model}

    async def _load_skill(self, chat: dict[str, Any], name: str) -> Any:
        for skill in chat["config"].get("skills", []):
            if skill["name"] != name:
                continue
            if skill.get("content") is not None:
                return {"name": name, "content": skill["content"]}
            url = skill.get("url")
            if url:
                if url not in self._skill_cache:
                    await check_url(url, allow_private=self.allow_private, field="skill url", resolver=self.resolver)
                    async with self._http(10) as http:
                        resp = await http.get(url)
                        resp.raise_for_status()
                        self._skill_cache[url] = resp.text
                return {"name": name, "content": self._skill_cache[url]}
        return {"error": "unknown_skill", "message": f"no skill named {name!r}"}

    def _http(self, timeout_s: float) -> httpx.AsyncClient:
        """A client whose every connection goes through the URL guard (no redirects followed)."""
        import httpx  # on first use: a gateway whose agents fetch nothing never loads it (7 MB)

        transport = guarded_transport(allow_private=self.allow_private, resolver=self.resolver)
        return httpx.AsyncClient(timeout=timeout_s, transport=transport, follow_redirects=False)

    async def _app_tool(
        self, spec: ToolSpec, args: dict[str, Any], api_key_id: str | None, call: dict[str, Any]
    ) -> Any:
        assert spec.app
        tasks = self.tasks
        task = await tasks.create(spec.app, {**spec.input, **args}, setup=spec.setup or None, api_key_id=api_key_id)
        call["task_id"] = task["id"]
        deadline = time.monotonic() + spec.timeout_s * 6
        while True:
            done = await tasks.wait(task["id"], min(10.0, max(0.1, deadline - time.monotonic())))
            if done["status"] in ("completed", "failed", "cancelled") or time.monotonic() >= deadline:
                break
        if done["status"] == "completed":
            return done.get("output")
        return {"error": f"task_{done['status']}", "message": str(done.get("error") or done["status"])}

    async def _webhook_tool(self, spec: ToolSpec, args: dict[str, Any], call: dict[str, Any]) -> Any:
        """POST the call to the tool's URL (through the URL guard), signed with its named secret the
        Standard Webhooks way (plus the older ``X-Runyard-Signature``); the answer is the result."""
        assert spec.url
        url = await check_url(spec.url, allow_private=self.allow_private, field="tool url", resolver=self.resolver)
        body = orjson.dumps({"tool": spec.name, "call_id": call["id"], "arguments": args})
        secret = self.webhooks.config.secret
        if spec.secret:
            secret = self.secrets.get(spec.secret, "")
            if not secret:
                return {"error": "secret_not_found", "message": f"secret {spec.secret!r} is not configured"}
        headers = {"Content-Type": "application/json"}
        if secret:  # the tool's named secret, else the gateway's webhook secret
            headers = self.webhooks.signed_headers(body, "tool.call", secret=secret)
        parent = tracing.traceparent()  # the execute_tool span, for the receiver's trace
        if parent is not None:
            headers["traceparent"] = parent
        async with self._http(spec.timeout_s) as http:
            resp = await http.post(url, content=body, headers=headers)
        if resp.status_code >= 400:
            return {"error": "webhook_failed", "status": resp.status_code, "message": resp.text[:500]}
        try:
            return orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            return resp.text
