"""Shared pytest fixtures: the mock upstream servers (real HTTP servers on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.anthropic_mock import MockAnthropic
from support.openai_mock import MockOpenAI

pytest_plugins = ["support.e2e", "support.tasks_e2e", "support.scaleout", "support.console"]


@pytest.fixture(scope="session")
def _mock_openai_server() -> Iterator[MockOpenAI]:
    server = MockOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mock_openai(_mock_openai_server: MockOpenAI) -> MockOpenAI:
    """The session's mock OpenAI upstream, with requests and scripted behaviours cleared."""
    _mock_openai_server.reset()
    return _mock_openai_server


@pytest.fixture(scope="session")
def _mock_anthropic_server() -> Iterator[MockAnthropic]:
    server = MockAnthropic().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mock_anthropic(_mock_anthropic_server: MockAnthropic) -> MockAnthropic:
    """The session's mock Anthropic upstream, with requests and scripted behaviours cleared."""
    _mock_anthropic_server.reset()
    return _mock_anthropic_server
