"""The quickstart's local-model prompts are ones the tiny model (SmolLM2-135M) answers correctly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runyard import Client
from runyard.config import parse_config
from runyard.quickstart import (
    CHAT_EXPECTED,
    CHAT_PROMPT,
    PERSON_EXPECTED,
    PERSON_PROMPT,
    PERSON_SCHEMA,
    local_models_available,
)

needs_chat = pytest.mark.skipif(
    not local_models_available()["chat"], reason="the local extra is not installed (scripts/quickstart sets it up)"
)


@needs_chat
def test_quickstart_prompts_are_answered_correctly(tmp_path: Path) -> None:
    config = parse_config({"storage": {"url": f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"}})
    with Client.embedded(config=config) as client:
        streamed = "".join(
            chunk.delta.content or ""
            for chunk in client.ai.chat(CHAT_PROMPT, model="local::chat", stream=True, max_tokens=60, temperature=0)
        )
        assert CHAT_EXPECTED in streamed
        person = client.ai.chat(
            PERSON_PROMPT, model="local::chat", response_format=PERSON_SCHEMA, max_tokens=60, temperature=0
        )
        assert json.loads(person.content or "{}") == PERSON_EXPECTED
