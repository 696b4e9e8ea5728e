"""TensorZero-compatible API: ``POST /inference`` and ``POST /feedback``.

The official ``tensorzero`` Python client works against it unchanged
(``TensorZeroGateway.build_http(gateway_url="http://host:port")``); the wire protocol it
speaks is written up in ``shared/protocols/tensorzero.md`` and translated by
server/protocols/tensorzero.py.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..calls import guarded_stream
from ..http import (
    EventStream,
    caller_key_id,
    gateway,
    idempotency_key,
    idempotent,
    json_response,
    parse_object,
    read_body,
    read_object,
)
from ..openapi import ANY_OBJECT, Operation
from ..protocols import tensorzero as tz


async def inference(request: Request) -> Response:
    raw = await read_body(request)
    body = parse_object(raw)
    ctx = tz.call_context(body, caller_key_id(request))
    gw = gateway(request)
    chat_request = tz.chat_request(body, tz.model_name(body, gw.config.models))
    # ``dryrun: true`` answers as usual (the key is charged) but stores no inference.
    service = gw.ai
    if chat_request.stream:
        stream = await service.open_stream(chat_request, ctx)
        json_function = chat_request.response_format is not None
        return EventStream(tz.inference_events(stream.result, guarded_stream(stream), json_function))

    async def produce() -> Response:
        return json_response(tz.render_inference(await service.chat(chat_request, ctx), chat_request))

    return await idempotent(request, idempotency_key(request), raw, produce)


async def feedback(request: Request) -> Response:
    args = tz.feedback_args(await read_object(request))
    feedback_id = await gateway(request).feedback.submit(args.pop("metric_name"), args.pop("value"), **args)
    return json_response({"feedback_id": feedback_id})


routes = [
    Route("/inference", inference, methods=["POST"]),
    Route("/feedback", feedback, methods=["POST"]),
]

# The API description (server/openapi): one declaration per route.
operations = [
    Operation(
        "POST",
        "/inference",
        "TensorZero: inference",
        "tensorzero",
        "tensorzeroInference",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
        stream=True,
    ),
    Operation(
        "POST",
        "/feedback",
        "TensorZero: feedback",
        "tensorzero",
        "tensorzeroFeedback",
        body=ANY_OBJECT,
        response=ANY_OBJECT,
    ),
]
