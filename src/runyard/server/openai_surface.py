"""The OpenAI surface beyond chat/embeddings/models, wired in one place: its routes (Responses,
legacy completions, moderations, batches, OpenAI-style files) and the services they use."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ..gateway import Gateway
from ..services.openai_batches import OpenAIBatches
from ..services.openai_records import OpenAIRecords
from ..services.responses import ResponsesService
from .openapi import Operation
from .routes import openai_batches, openai_files, openai_legacy, openai_responses

# openai_files' routes come before the native /v1/files routes: they dispatch between the two.
routes: list[BaseRoute] = [
    *openai_responses.routes,
    *openai_legacy.routes,
    *openai_batches.routes,
    *openai_files.routes,
]

operations: list[Operation] = [
    *openai_responses.operations,
    *openai_legacy.operations,
    *openai_batches.operations,
    *openai_files.operations,
]


def install(app: Starlette, gateway: Gateway) -> None:
    """Put the surface's services on ``app.state``, where its routes find them."""
    records = OpenAIRecords(gateway.store.engine)
    app.state.openai_records = records
    app.state.openai_responses = ResponsesService(gateway.ai, records)
    app.state.openai_batches = OpenAIBatches(gateway.tasks, gateway.files, records, gateway.shared.locks)
