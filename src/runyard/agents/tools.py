"""The tools an agent's calls run server-side: internal ones (plan, memory, code_execution,
load_skill, image_generation), app tools (a task) and webhook tools (a signed POST).

Sub-agent tools are the loop's own (:meth:`runyard.agents.loop.AgentLoop.run_tool`); client tools
are run by the caller.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import httpx
import orjson

from .. import webhooks as standard
from ..inference import ImageRequest
from ..services.files import FileService
from ..services.media import MediaService
from ..services.tasks import TaskRunner
from ..services.urlguard import check_url, guarded_session
from ..services.webhooks import SIGNATURE_HEADER, sign
from .chats import ChatStore
from .config import AgentConfig, ToolSpec
from .sandbox import run_code
from .web_search import SearxngSearch

__all__ = ["ServerTools"]


class ServerTools:
    def __init__(
        self,
        chats: ChatStore,
        media: MediaService,
        files: FileService,
        tasks: TaskRunner,
        *,
        secrets: dict[str, str],
        allow_private: bool = False,
        search: SearxngSearch | None = None,
    ) -> None:
        """``secrets``: what webhook tools sign with; ``allow_private``: tools may call private addresses;
        ``search``: the ``web_search`` provider (none configured: the tool is not offered)."""
        self.search = search
        self.chats = chats
        self.media = media
        self.files = files
        self.tasks = tasks
        self.secrets = secrets
        self.allow_private = allow_private
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
                    await check_url(url, allow_private=self.allow_private, field="skill url")
                    async with httpx.AsyncClient(timeout=10) as http:
                        resp = await http.get(url)
                        resp.raise_for_status()
                        self._skill_cache[url] = resp.text
                return {"name": name, "content": self._skill_cache[url]}
        return {"error": "unknown_skill", "message": f"no skill named {name!r}"}

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
        url = await check_url(spec.url, allow_private=self.allow_private, field="tool url")
        body = orjson.dumps({"tool": spec.name, "call_id": call["id"], "arguments": args})
        headers = {"Content-Type": "application/json", "User-Agent": "runyard-agents"}
        if spec.secret:
            secret = self.secrets.get(spec.secret)
            if secret is None:
                return {"error": "secret_not_found", "message": f"secret {spec.secret!r} is not configured"}
            headers.update(hook_headers(secret, body))
        async with guarded_session(allow_private=self.allow_private, timeout_s=spec.timeout_s) as http:
            async with http.post(url, data=body, headers=headers, allow_redirects=False) as resp:
                text = await resp.text()
                status = resp.status
        if status >= 400:
            return {"error": "webhook_failed", "status": status, "message": text[:500]}
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text


def hook_headers(secret: str, body: bytes) -> dict[str, str]:
    """Standard Webhooks headers (``webhook-id``/``-timestamp``/``-signature``) for ``body``."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard.sign(secret, msg_id, timestamp, body),
        SIGNATURE_HEADER: sign(secret, body),
    }
