"""The gateway's HTTP face: an ASGI app (Starlette) over :class:`runyard.gateway.Gateway`."""
