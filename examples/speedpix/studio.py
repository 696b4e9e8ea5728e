"""The SpeedPix examples' workflow steps (stand-ins for the doc's ComfyUI nodes: no model needed)."""

from __future__ import annotations

from typing import Any

from runyard.files import File


def white_background(image: File, text: str) -> File:
    """The doc's sample workflow (product photo -> white-background image), as a stand-in that
    returns the input picture's bytes as the output image."""
    return File(data=image.read_bytes(), filename="white-bg.png", content_type="image/png")


def paint(prompt: str, **_: Any) -> dict[str, Any]:
    """A text-to-image stand-in: a tiny PNG-named file whose bytes are the prompt."""
    return {"file": File(data=prompt.encode(), filename="painting.png", content_type="image/png")}
