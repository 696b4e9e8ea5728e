"""Agent frameworks, unchanged, pointed at ``runyard serve`` (base URL ``.../v1``) over the loopback
mock upstream, which is scripted to answer with the tool calls the frameworks need to finish:
the OpenAI Agents SDK (Responses API and chat-completions modes), LangChain's ``ChatOpenAI``,
Pydantic AI and instructor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI


class City(BaseModel):
    name: str
    country: str


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


@pytest.fixture
def base_url(gateway_server: GatewayProcess) -> str:
    return gateway_server.url + "/v1"


# -- OpenAI Agents SDK --------------------------------------------------------------------


@pytest.fixture
def agents_sdk() -> Iterator[None]:
    from agents import set_tracing_disabled

    set_tracing_disabled(True)  # no export to OpenAI's tracing backend
    yield


@pytest.mark.parametrize("mode", ["responses", "chat_completions"])
def test_openai_agents_tool_and_handoff(base_url: str, mock_openai: MockOpenAI, agents_sdk: None, mode: str) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner, function_tool

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    model_class = OpenAIResponsesModel if mode == "responses" else OpenAIChatCompletionsModel
    model = model_class(model="gpt", openai_client=client)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    weather = Agent(name="weather", instructions="Answer weather questions.", tools=[get_weather], model=model)
    triage = Agent(name="triage", instructions="Hand weather questions off.", handoffs=[weather], model=model)
    mock_openai.script(
        B.reply(tool_calls=[_call("call_h", "transfer_to_weather", {})]),
        B.reply(tool_calls=[_call("call_w", "get_weather", {"city": "Paris"})]),
    )  # then the default: the tool's result, echoed ("tool said: ...")
    result = Runner.run_sync(triage, "What is the weather in Paris?")
    assert result.final_output == "tool said: sunny in Paris"
    assert result.last_agent.name == "weather" and calls == ["Paris"]
    chats = [r for r in mock_openai.requests if r["path"].endswith("/chat/completions")]
    assert len(chats) == 3
    assert [t["function"]["name"] for t in chats[0]["json"]["tools"]] == ["transfer_to_weather"]
    assert [t["function"]["name"] for t in chats[1]["json"]["tools"]] == ["get_weather"]
    assert chats[2]["json"]["messages"][-1] == {"role": "tool", "tool_call_id": "call_w", "content": "sunny in Paris"}


def test_openai_agents_streamed_run(base_url: str, mock_openai: MockOpenAI, agents_sdk: None) -> None:
    import asyncio

    from agents import Agent, OpenAIResponsesModel, Runner

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0)
    agent = Agent(name="echo", instructions="Repeat.", model=OpenAIResponsesModel(model="gpt", openai_client=client))

    async def run() -> tuple[str, list[str]]:
        streamed = Runner.run_streamed(agent, "stream through the agent")
        kinds = [event.type async for event in streamed.stream_events()]
        return str(streamed.final_output), kinds

    final, kinds = asyncio.run(run())
    assert final == "echo: stream through the agent" and "raw_response_event" in kinds


# -- LangChain ----------------------------------------------------------------------------


@pytest.mark.parametrize("responses_api", [False, True])
def test_langchain_invoke_and_stream(base_url: str, mock_openai: MockOpenAI, responses_api: bool) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt", base_url=base_url, api_key="unused", max_retries=0, use_responses_api=responses_api)
    assert llm.invoke("hello langchain").text == "echo: hello langchain"
    pieces = [chunk.text for chunk in llm.stream("stream langchain words")]
    assert "".join(pieces) == "echo: stream langchain words" and len([p for p in pieces if p]) > 1


def test_langchain_bind_tools(base_url: str, mock_openai: MockOpenAI) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    llm = ChatOpenAI(model="gpt", base_url=base_url, api_key="unused", max_retries=0).bind_tools([get_weather])
    message = llm.invoke("weather in Paris?")
    assert message.tool_calls[0]["name"] == "get_weather" and message.tool_calls[0]["args"] == {"city": "Paris"}


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_with_structured_output(base_url: str, mock_openai: MockOpenAI, method: str) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt", base_url=base_url, api_key="unused", max_retries=0)
    if method == "function_calling":  # the mock fills one string; answer with the whole call
        mock_openai.script(B.reply(tool_calls=[_call("call_c", "City", {"name": "Paris", "country": "France"})]))
    city = llm.with_structured_output(City, method=method).invoke("Paris?")  # type: ignore[arg-type]
    assert isinstance(city, City)
    sent = mock_openai.last_request["json"]
    if method == "json_schema":  # the mock fills the schema it was sent: strings are "x"
        assert city == City(name="x", country="x")
        assert sent["response_format"]["json_schema"]["schema"]["required"] == ["name", "country"]
    else:
        assert city == City(name="Paris", country="France")
        assert sent["tools"][0]["function"]["name"] == "City"


# -- Pydantic AI --------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_pydantic_ai_agent_with_tool_and_typed_output(base_url: str, mock_openai: MockOpenAI, api: str) -> None:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=base_url, api_key="unused")
    model_class = OpenAIChatModel if api == "chat" else OpenAIResponsesModel
    model = model_class("gpt", provider=provider)
    agent = Agent(model, output_type=City, instructions="Find the city.")
    looked_up: list[str] = []

    @agent.tool_plain
    def lookup(query: str) -> str:
        """Look a place up."""
        looked_up.append(query)
        return "Paris is in France"

    mock_openai.script(
        B.reply(tool_calls=[_call("call_l", "lookup", {"query": "Paris"})]),
        B.reply(tool_calls=[_call("call_f", "final_result", {"name": "Paris", "country": "France"})]),
    )
    result = agent.run_sync("Where is Paris?")
    assert result.output == City(name="Paris", country="France") and looked_up == ["Paris"]
    tool_reply = mock_openai.requests[-1]["json"]["messages"][-1]
    assert tool_reply["role"] == "tool" and tool_reply["content"] == "Paris is in France"


# -- instructor ---------------------------------------------------------------------------


def test_instructor_extracts_a_model(base_url: str, mock_openai: MockOpenAI) -> None:
    import instructor

    client = instructor.from_openai(openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0))
    mock_openai.script(B.reply(tool_calls=[_call("call_c", "City", {"name": "Lyon", "country": "France"})]))
    city = client.chat.completions.create(
        model="gpt", response_model=City, messages=[{"role": "user", "content": "Lyon is a city in France."}]
    )
    assert city.model_dump() == {"name": "Lyon", "country": "France"}
    sent = mock_openai.last_request["json"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "City"}}
