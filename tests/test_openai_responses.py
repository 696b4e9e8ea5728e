"""The Responses API with the official ``openai`` package, unchanged, against ``runyard serve``
over the loopback mock upstream (and Anthropic's, through the same translation)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from support.gateway import GatewayProcess
from support.openai_mock import B, MockOpenAI

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def oai(gateway_server: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway_server.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("model", ["gpt", "claude", "dummy::echo"])
def test_create_text(oai: openai.OpenAI, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    resp = oai.responses.create(model=model, input="hello responses", instructions="be brief")
    assert resp.status == "completed" and resp.object == "response"
    assert resp.output_text == "echo: hello responses"
    assert resp.id.startswith("resp_") and resp.model == model
    assert resp.usage is not None and resp.usage.output_tokens > 0
    if model == "gpt":
        sent = mock_openai.last_request["json"]["messages"]
        assert sent == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello responses"}]


def test_previous_response_id_continues_the_conversation(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    first = oai.responses.create(model="gpt", input="my name is Ada", instructions="first only")
    second = oai.responses.create(model="gpt", input="what is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    sent = mock_openai.last_request["json"]["messages"]
    assert sent == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "echo: my name is Ada"},
        {"role": "user", "content": "what is my name?"},
    ]  # instructions are not carried over, as on OpenAI
    again = oai.responses.retrieve(second.id)
    assert again.output_text == second.output_text and again.id == second.id
    items = oai.responses.input_items.list(second.id)
    assert [i.content[0].text for i in items.data] == ["what is my name?"]  # type: ignore[union-attr]


def test_store_false_is_not_kept(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.responses.create(model="gpt", input="forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)
    with pytest.raises(openai.BadRequestError) as err:
        oai.responses.create(model="gpt", input="more", previous_response_id=resp.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_delete(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.responses.create(model="gpt", input="delete me")
    oai.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(resp.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(resp.id)


def test_function_calling_round_trip(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    resp = oai.responses.create(model="gpt", input="weather in Paris?", tools=[WEATHER], tool_choice="auto")
    call = resp.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert mock_openai.last_request["json"]["tools"][0]["function"]["name"] == "get_weather"
    follow = oai.responses.create(
        model="gpt",
        previous_response_id=resp.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
        tools=[WEATHER],
    )
    assert follow.output_text == "tool said: sunny"
    sent = mock_openai.last_request["json"]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id and sent[-1]["role"] == "tool"


def test_structured_output_with_text_format(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    resp = oai.responses.create(
        model="gpt",
        input="a city",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert json.loads(resp.output_text) == {"city": "x"}
    fmt = mock_openai.last_request["json"]["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}}


def test_responses_parse_into_a_pydantic_model(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str
        population: int

    parsed = oai.responses.parse(model="gpt", input="a city", text_format=City)
    assert parsed.output_parsed == City(name="x", population=1)  # the mock fills the schema it was sent


@pytest.mark.parametrize("model", ["gpt", "claude"])
def test_stream_events(oai: openai.OpenAI, mock_openai: MockOpenAI, mock_anthropic: object, model: str) -> None:
    with oai.responses.stream(model=model, input="stream these words") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.content_part.added" in kinds
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: stream these words" and len(deltas) > 1
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "echo: stream these words"
    assert oai.responses.retrieve(final.id).output_text == final.output_text


def test_stream_function_call(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    with oai.responses.stream(model="gpt", input="weather?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    call = final.output[0]
    assert call.type == "function_call" and json.loads(call.arguments) == {"city": "Paris"}


def test_stream_failure_mid_way_is_a_failed_event(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.drop_mid_stream(after_chunks=2))
    stream = oai.responses.create(model="gpt", input="a b c d e f", stream=True)
    kinds = [e.type for e in stream]
    assert kinds[-1] == "response.failed" and "response.completed" not in kinds


def test_upstream_error_before_streaming_is_an_http_error(oai: openai.OpenAI, mock_openai: MockOpenAI) -> None:
    mock_openai.script(B.status(500))
    with pytest.raises(openai.InternalServerError):
        oai.responses.create(model="gpt", input="x", stream=True)


def test_responses_are_inferences(oai: openai.OpenAI, mock_openai: MockOpenAI, gateway_server: GatewayProcess) -> None:
    """Recorded with their attempts, and feedback is accepted on them."""
    mock_openai.script(B.status(503))
    resp = oai.responses.create(model="gpt-with-fallback", input="recorded")
    inference_id = resp.model_extra["x_runyard"]["inference_id"]  # type: ignore[index]
    row: dict[str, object] = {}
    for _ in range(100):
        got = httpx.get(f"{gateway_server.url}/v1/inferences/{inference_id}")
        if got.status_code == 200:
            row = got.json()
            break
        time.sleep(0.05)
    assert row, "the response's inference was not recorded"
    assert row["provider"] == "backup" and row["status"] == "ok"
    attempts = row["attempts"]
    assert isinstance(attempts, list) and attempts[0]["provider"] == "mock"
    feedback = httpx.post(
        f"{gateway_server.url}/v1/feedback",
        json={"metric_name": "thumbs_up", "inference_id": inference_id, "value": True},
    )
    assert feedback.status_code == 200, feedback.text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt"}, None),
        ({"model": "gpt", "input": [{"type": "web_search_call", "id": "x"}]}, "input[0].type"),
        ({"model": "gpt", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "gpt", "input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"model": "gpt", "input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
        ({"model": "gpt", "input": "x", "background": True}, "background"),
        ({"model": "gpt", "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
        ({"model": "gpt", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        ({"model": "gpt", "input": "x", "temperature": 9}, None),
    ],
)
def test_bad_input_is_a_typed_400(gateway_server: GatewayProcess, body: dict[str, object], param: str | None) -> None:
    resp = httpx.post(f"{gateway_server.url}/v1/responses", json=body)
    assert resp.status_code in (400, 422), resp.text
    error = resp.json()["error"]
    assert error["message"] and error["code"]
    if param is not None:
        assert error["param"] == param


def test_unknown_response_is_404(gateway_server: GatewayProcess) -> None:
    for method, path in [("GET", "/v1/responses/resp_nope"), ("GET", "/v1/responses/resp_nope/input_items")]:
        resp = httpx.request(method, gateway_server.url + path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "response_not_found"


def test_idempotency_key_gives_a_retry_the_first_answer(
    gateway_server: GatewayProcess, mock_openai: MockOpenAI
) -> None:
    headers = {"Idempotency-Key": "resp-retry-1"}
    body = {"model": "gpt", "input": "only once"}
    first = httpx.post(f"{gateway_server.url}/v1/responses", json=body, headers=headers)
    again = httpx.post(f"{gateway_server.url}/v1/responses", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert len([r for r in mock_openai.requests if r["path"].endswith("/chat/completions")]) == 1
