"""Stand-ins for the apps the inference.sh doc runs (no model weights: small, deterministic outputs)."""

from __future__ import annotations

from pydantic import BaseModel

import runyard


class Prompt(BaseModel):
    prompt: str
    steps: int = 4


@runyard.app("infsh/flux-schnell", version="1.0.0", description="Text to image (a stand-in).")
def flux_schnell(input: Prompt) -> runyard.File:
    return runyard.File(data=b"\x89PNG\r\n\x1a\n" + input.prompt.encode(), filename="image.png")


@runyard.app("infsh/flux", version="1.0.0", description="Text to image (a stand-in).")
def flux(input: Prompt) -> runyard.File:
    return runyard.File(data=b"\x89PNG\r\n\x1a\n" + input.prompt.encode(), filename="image.png")


@runyard.app("google/veo-3-1-fast", version="1.0.0", description="Text to video (a stand-in).")
def veo(input: Prompt, ctx: runyard.AppContext) -> dict[str, str]:
    for step in range(input.steps):
        ctx.log(f"rendering {step + 1}/{input.steps}")
    return {"video": f"a video of {input.prompt}"}


class ImageIn(BaseModel):
    image: runyard.File


@runyard.app("infsh/image-processor", version="1.0.0", description="Reports the image it got.")
def image_processor(input: ImageIn) -> dict[str, int | str]:
    data = input.image.read_bytes()
    return {"bytes": len(data), "kind": "png" if data.startswith(b"\x89PNG") else "other"}


class Action(BaseModel):
    action: str


@runyard.app("infsh/my-app", version="1.0.0", description="Keeps a counter per session.")
class MyApp:
    def setup(self, config: dict) -> None:
        self.calls = 0

    def run(self, input: Action) -> dict[str, int | str]:
        self.calls += 1
        return {"action": input.action, "calls": self.calls}


@runyard.app("infsh/needs-key", version="1.0.0", requirements=["secret:SLACK_TOKEN"], description="Needs a secret.")
def needs_key(input: dict, ctx: runyard.AppContext) -> dict[str, bool]:
    return {"ok": bool(ctx.secrets["SLACK_TOKEN"])}
