"""``runyard quickstart``: the whole product in one run, embedded (no server, no keys, no network)."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .config import RunyardConfig, parse_config

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

CITY_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "city",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
            "required": ["name", "population"],
        },
    },
}


def quickstart_config(base: RunyardConfig | None = None) -> RunyardConfig:
    """The built-in config plus a ``thumbs_up`` metric, so feedback can be shown."""
    if base is not None and "thumbs_up" in base.metrics:
        return base
    data: dict[str, Any] = base.model_dump(exclude={"providers"}) if base is not None else {}
    if base is not None:
        data["providers"] = {k: v.model_dump() for k, v in base.providers.items()}
    data.setdefault("metrics", {})["thumbs_up"] = {"type": "boolean", "level": "inference"}
    return parse_config(data, "<quickstart>")


def run_quickstart(config: RunyardConfig | None = None, model: str = "dummy::echo") -> None:
    from .client import Client

    console = Console()
    console.print(Panel.fit("Runyard quickstart — embedded gateway, in this process", style="bold cyan"))
    console.print(
        "[dim]Model:[/] dummy — the built-in deterministic provider (no model, no keys); "
        "point [bold]--config[/] at a runyard.toml to use real providers.\n"
    )
    started = time.perf_counter()
    with Client.embedded(config=quickstart_config(config)) as client:
        result = client.ai.chat("Hello, Runyard!", model=model)
        _show(console, "chat", result.content, f"{result.provider} · {result.usage.total_tokens} tokens")

        console.print("[bold]stream[/]  ", end="")
        for chunk in client.ai.chat("streams arrive piece by piece", model=model, stream=True):
            console.print(chunk.delta.content or "", end="")
        console.print()

        messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
        call = client.ai.chat(messages, model="dummy::tool", tools=[WEATHER_TOOL])
        tool_call = call.tool_calls[0]
        _show(console, "tool call", f"{tool_call.function.name}({tool_call.function.arguments})", "model asked")
        messages.append({"role": "assistant", "content": None, "tool_calls": [_plain(tool_call)]})
        messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": json.dumps({"temp_c": 18})})
        answer = client.ai.chat(messages, model="dummy::tool", tools=[WEATHER_TOOL])
        _show(console, "tool answer", answer.content, "after the tool result")

        structured = client.ai.chat("A city, as JSON", model=model, response_format=CITY_SCHEMA)
        _show(console, "json_schema", structured.content, "valid against the schema")

        emb = client.ai.embed.create(["red apple", "green apple"], model="dummy::embed")
        _show(
            console, "embeddings", f"{len(emb.embeddings)} vectors × {len(emb.embeddings[0])} dims", str(emb.provider)
        )

        fb = client.feedback("thumbs_up", True, inference_id=result.inference_id)
        _show(
            console,
            "feedback",
            f"thumbs_up=True on inference {str(result.inference_id)[:13]}…",
            f"{fb.feedback_id[:13]}…",
        )
    elapsed = time.perf_counter() - started
    console.print(f"\n[green]done[/] in {elapsed:.2f}s — every call above is recorded in {config_url(config)}")


def config_url(config: RunyardConfig | None) -> str:
    return (config or parse_config({})).storage.url.split("///", 1)[-1]


def _plain(tool_call: Any) -> dict[str, Any]:
    if hasattr(tool_call, "model_dump"):
        data: dict[str, Any] = tool_call.model_dump()
        return data
    return dict(tool_call)


def _show(console: Console, label: str, value: Any, note: str) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_row(f"[bold]{label}[/]", str(value), f"[dim]{note}[/]")
    console.print(table)
