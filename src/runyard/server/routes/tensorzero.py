"""TensorZero-compatible API (being written)."""

from starlette.routing import Route

routes: list[Route] = []
