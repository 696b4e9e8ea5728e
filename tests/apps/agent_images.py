"""A stand-in image generator for the agents tests: the prompt's bytes as a "PNG" file."""

from __future__ import annotations

from pydantic import BaseModel

import runyard


class ImageIn(BaseModel):
    prompt: str
    size: str = "small"


@runyard.app("tests/image-gen", version="1.0.0", description="Fake image generation.")
def image_gen(input: ImageIn) -> runyard.File:
    return runyard.File(data=b"\x89PNG\r\n\x1a\n" + input.prompt.encode(), filename=f"{input.size}.png")
