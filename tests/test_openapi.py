"""Finding 4: an API description. ``/openapi.json`` is valid OpenAPI 3.1, public, and covers every
route the app registers (a route without a declaration fails here); ``/docs`` works offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from runyard.config import hash_api_key, load_config
from runyard.server.app import create_app
from runyard.server.auth import PUBLIC_PATHS
from runyard.server.openapi import spec_path
from support.gateway import GatewayProcess

KEY = "ry_openapi_test_key"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("openapi")
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[files]
dir = "{root / "files"}"
""")
    gw = GatewayProcess(path).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_spec_is_public_and_valid_openapi_31(server: GatewayProcess) -> None:
    assert httpx.get(f"{server.url}/v1/tasks").status_code == 401  # keys are on
    resp = httpx.get(f"{server.url}/openapi.json")  # no credentials
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    spec = resp.json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # openapi-spec-validator: raises on any violation of the 3.1 schema


def _app_operations(tmp_path: Path) -> set[tuple[str, str]]:
    (tmp_path / "runyard.toml").write_text(f'[storage]\nurl = "sqlite+aiosqlite:///{tmp_path / "r.db"}"\n')
    app = create_app(load_config(tmp_path / "runyard.toml"), worker=False)
    found = set()
    for route in app.routes:
        assert isinstance(route, Route), f"unexpected route type {route!r}: declare it in the spec"
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method.lower(), spec_path(route.path)))
    return found


def test_every_registered_route_is_in_the_spec(server: GatewayProcess, tmp_path: Path) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    registered = _app_operations(tmp_path)
    missing = sorted(registered - described)
    assert not missing, f"routes without an OpenAPI declaration (add an Operation next to the route): {missing}"
    assert not sorted(described - registered), "the spec describes routes the app does not have"
    assert len(registered) >= 80


def test_every_operation_describes_its_errors_and_auth(server: GatewayProcess) -> None:
    spec = httpx.get(f"{server.url}/openapi.json").json()
    public = set(PUBLIC_PATHS)  # what the guard lets through without a key
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            errors = op["responses"]["4XX"]["content"]
            assert "application/json" in errors, where  # the guard's 401/429 are always Runyard's shape
            assert any(str(s).startswith("2") for s in op["responses"]), where
            if path in public or path.startswith("/docs"):
                assert op["security"] == [], where
            elif path.startswith("/scc/"):
                assert op["security"] in ([], [{"speedpix": []}]), where
            else:
                assert {"bearer": []} in op["security"], where
            for param in re.findall(r"\{(\w+)\}", path):
                assert any(p["name"] == param and p["in"] == "path" for p in op["parameters"]), where
    schemas = spec["components"]["schemas"]
    assert schemas["RunyardError"]["properties"]["error"]["required"] == ["code", "message"]
    assert "InferenceShProblem" in schemas and "SpeedPixError" in schemas
    run_body = spec["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schemas[run_body["$ref"].rsplit("/", 1)[1]]["required"] == ["app"]  # the model the route validates with
    assert "GetTask" in spec["paths"]["/v1/runs"]["post"]["responses"]["201"]["links"]


def test_docs_page_works_offline(server: GatewayProcess) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/") for s in sources), sources  # nothing from a CDN
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for source in sources:
        asset = httpx.get(server.url + source)
        assert asset.status_code == 200 and len(asset.content) > 0, source
    bundle = httpx.get(f"{server.url}/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content and len(bundle.content) > 500_000
    assert "/openapi.json" in httpx.get(f"{server.url}/docs/init.js").text
