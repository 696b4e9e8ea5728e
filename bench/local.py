#!/usr/bin/env python3
"""Local models through Runyard vs the libraries called directly, same model, same input.

    .venv/bin/python bench/local.py                 # 5 rounds (about 2-3 min on 2 cores)
    .venv/bin/python bench/local.py --rounds 1      # smoke run

Chat: tokens/s of llama-cpp-python's ``create_chat_completion`` on the bundled SmolLM2 GGUF
(temperature 0, the same prompt and max_tokens, so every run generates the same tokens) vs
the same request through Runyard embedded (``AsyncClient.embedded``, recording on) and over
HTTP (``runyard serve`` in a subprocess, ``POST /v1/chat/completions``), non-streamed and
streamed. Embeddings: texts/s of ``SentenceTransformer.encode`` vs ``/v1/ai/embed`` with the
same texts (one batch request, and many small concurrent ones).

Each figure is the best over rounds (medians too): the direct and Runyard runs alternate within
a round, so both see the same machine, and the best run is the one least disturbed by others.
Ratios are Runyard / direct (target >= 0.9). Needs the local extra; exits 2 when it is missing.
Loopback only; the server it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

PROMPT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a detailed paragraph about the history of the printing press."},
]
MAX_TOKENS = 128
TEXTS = [
    f"Sentence {i}: the quick brown fox number {i} jumps over {i % 7} lazy dogs near the river." for i in range(256)
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- direct -------------------------------------------------------------------------------


class Direct:
    def __init__(self) -> None:
        from llama_cpp import Llama
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        from runyard.providers.llamacpp import bundled_gguf
        from runyard.providers.st_embeddings import bundled_model_dir

        path = bundled_gguf()
        assert path is not None
        self.llama = Llama(model_path=str(path), n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False)
        model_dir = bundled_model_dir()
        assert model_dir is not None
        self.st = SentenceTransformer(model_dir, device="cpu", local_files_only=True)

    def chat(self, stream: bool) -> tuple[int, float]:
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"messages": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0.0}
        if stream:
            n = sum(
                1
                for c in self.llama.create_chat_completion(stream=True, **kwargs)
                if c["choices"][0]["delta"].get("content")
            )
        else:
            out = self.llama.create_chat_completion(**kwargs)
            n = int(out["usage"]["completion_tokens"])
        return n, time.perf_counter() - t0

    def embed(self) -> float:
        t0 = time.perf_counter()
        self.st.encode(TEXTS, batch_size=64, normalize_embeddings=True, convert_to_numpy=True).tolist()
        return time.perf_counter() - t0


# -- through Runyard --------------------------------------------------------------------------


async def runyard_chat(client: Any, stream: bool) -> tuple[int, float]:
    kwargs: dict[str, Any] = {"model": "local::chat", "max_tokens": MAX_TOKENS, "temperature": 0.0}
    t0 = time.perf_counter()
    if stream:
        s = await client.ai.chat(PROMPT, stream=True, **kwargs)
        n = 0
        async for chunk in s:
            if chunk.delta and chunk.delta.content:
                n += 1
    else:
        n = (await client.ai.chat(PROMPT, **kwargs)).usage.output_tokens
    return n, time.perf_counter() - t0


async def http_chat(http: httpx.AsyncClient, stream: bool) -> tuple[int, float]:
    body: dict[str, Any] = {"model": "local::chat", "messages": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0.0}
    t0 = time.perf_counter()
    if stream:
        body["stream"] = True
        n = 0
        async with http.stream("POST", "/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: {"):
                    choices = json.loads(line[6:]).get("choices") or [{}]
                    if (choices[0].get("delta") or {}).get("content"):
                        n += 1
    else:
        r = await http.post("/v1/chat/completions", json=body)
        r.raise_for_status()
        n = int(r.json()["usage"]["completion_tokens"])
    return n, time.perf_counter() - t0


async def runyard_embed(client: Any, concurrent: bool) -> float:
    t0 = time.perf_counter()
    if concurrent:
        await asyncio.gather(
            *(client.ai.embed.create(TEXTS[i : i + 8], model="local::embed") for i in range(0, len(TEXTS), 8))
        )
    else:
        await client.ai.embed.create(TEXTS, model="local::embed")
    return time.perf_counter() - t0


def start_server(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cfg = tmp / "runyard.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{tmp}/serve.db"\n[files]\ndir = "{tmp}/files"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "runyard", "serve", "--config", str(cfg), "--port", str(port), "--no-worker"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("runyard serve did not start: " + (proc.stderr.read().decode() if proc.stderr else ""))


async def main_async(rounds: int) -> dict[str, Any]:
    from runyard.client import AsyncClient
    from runyard.config import parse_config

    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    direct = Direct()
    tmp = Path(tempfile.mkdtemp(prefix="runyard-bench-local-"))
    config = parse_config(
        {"storage": {"url": f"sqlite+aiosqlite:///{tmp}/embedded.db"}, "files": {"dir": str(tmp / "f")}}
    )
    proc, url = start_server(tmp)
    try:
        async with AsyncClient.embedded(config=config) as client, httpx.AsyncClient(base_url=url, timeout=120) as http:
            # warm everything up: model loads, caches, first-call costs
            direct.chat(False)
            direct.embed()
            await runyard_chat(client, False)
            await runyard_embed(client, False)
            await http_chat(http, False)
            for r in range(rounds):
                for stream in (False, True):
                    tag = "stream" if stream else "whole"
                    order = ["direct", "embedded", "http"]
                    order = order[r % 3 :] + order[: r % 3]
                    for who in order:
                        if who == "direct":
                            n, dt = direct.chat(stream)
                        elif who == "embedded":
                            n, dt = await runyard_chat(client, stream)
                        else:
                            n, dt = await http_chat(http, stream)
                        add(f"chat_{tag}_{who}", n / dt)
                add("embed_direct", len(TEXTS) / direct.embed())
                add("embed_runyard_batch", len(TEXTS) / await runyard_embed(client, False))
                add("embed_runyard_concurrent", len(TEXTS) / await runyard_embed(client, True))
                print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {k: max(v) for k, v in results.items()} | {k + "_median": statistics.median(v) for k, v in results.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print the medians as one JSON line")
    args = ap.parse_args()
    from runyard.quickstart import local_models_available

    ready = local_models_available()
    if not (ready["chat"] and ready["embed"]):
        print("bench/local.py needs the local extra: scripts/_setup.sh local (or pip install 'runyard[local]')")
        return 2
    m = asyncio.run(main_async(args.rounds))
    print(f"\nlocal models, best of {args.rounds} rounds ({os.cpu_count()} cores; medians in brackets)\n")
    print(f"{'':34}{'direct':>10}{'Runyard':>10}{'ratio':>8}{'(median ratio)':>17}")
    rows = [
        ("chat tokens/s, embedded", "chat_whole_direct", "chat_whole_embedded"),
        ("chat tokens/s, embedded, stream", "chat_stream_direct", "chat_stream_embedded"),
        ("chat tokens/s, HTTP", "chat_whole_direct", "chat_whole_http"),
        ("chat tokens/s, HTTP, stream", "chat_stream_direct", "chat_stream_http"),
        ("embeddings/s, one batch request", "embed_direct", "embed_runyard_batch"),
        ("embeddings/s, 32 concurrent x 8", "embed_direct", "embed_runyard_concurrent"),
    ]
    for label, d, r in rows:
        ratio = m[r] / m[d]
        median_ratio = m[r + "_median"] / m[d + "_median"]
        mark = "PASS" if ratio >= 0.9 else "MISS"
        print(f"{label:34}{m[d]:10.1f}{m[r]:10.1f}{ratio:8.3f}{f'({median_ratio:.3f})':>17}  {mark}")
    if args.json:
        print(json.dumps(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
