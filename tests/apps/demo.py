"""Test apps: echo, progress/logs, slow (cancellable), counter sessions, requirements, crashes, files."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from pydantic import BaseModel, Field

import runyard
from runyard.apps import AppContext


class EchoIn(BaseModel):
    text: str = Field(min_length=1)
    times: int = Field(default=1, ge=1, le=10)


class EchoOut(BaseModel):
    text: str
    attempt: int


@runyard.app("tests/echo", version="1.0.0", description="Repeat text.")
def echo_v1(input: EchoIn, ctx: AppContext) -> EchoOut:
    return EchoOut(text=input.text * input.times, attempt=ctx.attempt)


@runyard.app("tests/echo", version="1.10.0")
async def echo_v110(input: EchoIn, ctx: AppContext) -> EchoOut:
    return EchoOut(text=(input.text * input.times).upper(), attempt=ctx.attempt)


@runyard.app("tests/echo", version="1.2.0")
def echo_v12(input: EchoIn) -> EchoOut:
    return EchoOut(text=input.text[::-1], attempt=0)


class StepsIn(BaseModel):
    steps: int = Field(default=4, ge=1, le=100)
    delay: float = 0.0


@runyard.app("tests/steps", version="1.0.0")
async def steps(input: StepsIn, ctx: AppContext) -> dict[str, int]:
    for i in range(input.steps):
        ctx.log(f"step {i + 1} of {input.steps}")
        ctx.progress((i + 1) / input.steps, f"did {i + 1}")
        if input.delay:
            await asyncio.sleep(input.delay)
    return {"steps": input.steps}


class SlowIn(BaseModel):
    seconds: float = 30.0


@runyard.app("tests/slow", version="1.0.0")
def slow(input: SlowIn, ctx: AppContext) -> dict[str, float]:
    """Sync and cooperative: checks ctx.cancelled between short sleeps."""
    started = time.monotonic()
    ctx.log("started")
    while time.monotonic() - started < input.seconds:
        ctx.check_cancelled()
        time.sleep(0.02)
    return {"slept": input.seconds}


@runyard.app("tests/stubborn", version="1.0.0")
async def stubborn(input: SlowIn, ctx: AppContext) -> dict[str, float]:
    """Async and never checks cancellation: interrupted after cancel_grace_s."""
    await asyncio.sleep(input.seconds)
    return {"slept": input.seconds}


class CounterIn(BaseModel):
    add: int = 1


class CounterSetup(BaseModel):
    start: int = 0


@runyard.app("tests/counter", version="1.0.0")
class Counter:
    """Keeps a running total in memory: sessions make it stateful."""

    def setup(self, config: CounterSetup) -> None:
        self.total = config.start
        self.pid = os.getpid()

    def run(self, input: CounterIn, ctx: AppContext) -> dict[str, int]:
        self.total += input.add
        return {"total": self.total, "pid": self.pid}


@runyard.app("tests/needs-secrets", version="1.0.0", requirements=["secret:TEST_TOKEN", "integration:slack"])
def needs_secrets(input: dict, ctx: AppContext) -> dict[str, str]:
    return {"token_len": str(len(ctx.secrets["TEST_TOKEN"]))}


@runyard.app("tests/has-secret", version="1.0.0", requirements=["secret:PRESENT_TOKEN"])
def has_secret(input: dict, ctx: AppContext) -> dict[str, bool]:
    return {"ok": ctx.secrets["PRESENT_TOKEN"] == "s3cret"}


@runyard.app("tests/fails", version="1.0.0")
def fails(input: dict) -> dict:
    raise RuntimeError("boom: " + str(input.get("why", "no reason")))


class NapIn(BaseModel):
    seconds: float = 1.5
    marker: str = ""


@runyard.app("tests/nap", version="1.0.0")
async def nap(input: NapIn, ctx: AppContext) -> dict[str, object]:
    """For durability tests: records the pid running it, then sleeps."""
    ctx.log(f"pid {os.getpid()} attempt {ctx.attempt}")
    if input.marker:
        with open(input.marker, "a") as fh:  # noqa: ASYNC230 - a tiny test marker
            fh.write(f"{os.getpid()} {ctx.attempt}\n")
    await asyncio.sleep(input.seconds)
    return {"pid": os.getpid(), "attempt": ctx.attempt}


@runyard.app("tests/crash", version="1.0.0")
def crash(input: dict, ctx: AppContext) -> dict:
    """Kills its own worker process (a hard crash, no cleanup)."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@runyard.app("tests/quick", version="1.0.0")
async def quick(input: dict) -> dict:
    """For the load bench: returns its input."""
    return {"n": input.get("n")}


@runyard.app("tests/invert", version="1.0.0")
def invert(image: runyard.File, ctx: AppContext, suffix: str = ".out") -> runyard.File:
    """Files in and out: returns the bytes inverted."""
    data = image.read_bytes()
    ctx.log(f"read {len(data)} bytes from {image.filename}")
    return runyard.File(data=bytes(255 - b for b in data), filename=(image.filename or "file") + suffix)
