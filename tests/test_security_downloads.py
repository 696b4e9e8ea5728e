"""Finding 2: stored user content never runs on the gateway's origin. Every download path (native
``/v1/files/{id}/content``, SpeedPix ``access_url``) answers with ``nosniff``, a sandboxing CSP and
``Content-Disposition: attachment`` for active types; passive media may stay inline."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runyard.config import hash_api_key
from runyard.server.downloads import content_disposition, is_passive
from support.gateway import GatewayProcess

ADMIN_KEY = "ry_sec_downloads_admin"
APP_KEY, APP_SECRET = "sec-app", "sec-app-secret"
ACTIVE = [
    ("page.html", "text/html"),
    ("page.htm", "text/html; charset=utf-8"),
    ("pic.svg", "image/svg+xml"),
    ("doc.xhtml", "application/xhtml+xml"),
    ("data.xml", "text/xml"),
    ("data2.xml", "application/xml"),
    ("app.js", "text/javascript"),
    ("app2.js", "application/javascript"),
    ("doc.pdf", "application/pdf"),
    ("x.bin", "application/octet-stream"),
    ("weird", "text/html\r\nX-Injected: 1"),
]
SCRIPT = b"<html><script>fetch('/v1/files')</script></html>"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    root = tmp_path_factory.mktemp("sec-downloads")
    path = root / "runyard.toml"
    path.write_text(f"""
[server]
api_keys = ["{hash_api_key(ADMIN_KEY)}"]

[storage]
url = "sqlite+aiosqlite:///{root / "runyard.db"}"

[files]
dir = "{root / "files"}"

[apps.integrations.speedpix.apps]
{APP_KEY} = "{APP_SECRET}"
""")
    gw = GatewayProcess(path).start()
    try:
        yield gw
    finally:
        gw.stop()


def _assert_safe(resp: httpx.Response, *, inline: bool) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-content-type-options"] == "nosniff"
    csp = resp.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    disposition = resp.headers["content-disposition"]
    assert disposition.startswith("inline;" if inline else "attachment;"), disposition
    assert "x-injected" not in resp.headers


@pytest.mark.parametrize(("name", "content_type"), ACTIVE)
def test_native_download_of_active_content_is_an_attachment(
    server: GatewayProcess, name: str, content_type: str
) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    up = httpx.post(
        f"{server.url}/v1/files?filename={name}",
        content=SCRIPT + name.encode(),
        headers={**auth, "Content-Type": content_type.replace("\r\n", " ")},
    )
    assert up.status_code == 201, up.text
    got = httpx.get(f"{server.url}/v1/files/{up.json()['id']}/content", headers=auth)
    _assert_safe(got, inline=False)


def test_native_download_of_passive_media_stays_inline(server: GatewayProcess) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    up = httpx.post(
        f"{server.url}/v1/files?filename=a.png", content=b"\x89PNG..", headers={**auth, "Content-Type": "image/png"}
    )
    got = httpx.get(f"{server.url}/v1/files/{up.json()['id']}/content", headers=auth)
    _assert_safe(got, inline=True)


def _signed(path: str) -> dict[str, str]:
    """Headers signed as the speedpix client signs them."""
    h = {
        "accept": "application/json",
        "content-type": "application/json",
        "x-ca-key": APP_KEY,
        "x-ca-nonce": str(uuid.uuid4()),
        "x-ca-signature-method": "HmacSHA256",
        "x-ca-timestamp": str(int(time.time() * 1000)),
    }
    names = ("x-ca-key", "x-ca-nonce", "x-ca-signature-method", "x-ca-timestamp")
    text = "\n".join(["POST", h["accept"], "", h["content-type"], "", *(f"{n}:{h[n]}" for n in names), path])
    h["x-ca-signature"] = base64.b64encode(
        hmac.new(APP_SECRET.encode(), text.encode(), hashlib.sha256).digest()
    ).decode()
    return h


@pytest.mark.parametrize(("name", "content_type"), ACTIVE[:9])
def test_speedpix_upload_of_html_is_not_served_as_a_page(server: GatewayProcess, name: str, content_type: str) -> None:
    """The reported attack: sign an upload, PUT text/html, open the unauthenticated access_url."""
    path = "/scc/sp_create_temp_file_upload_sign"
    signed = httpx.post(server.url + path, json={"originalFilename": name}, headers=_signed(path))
    assert signed.status_code == 200, signed.text
    data = signed.json()["data"]
    put = httpx.put(data["upload_url"], content=SCRIPT, headers={"Content-Type": content_type})
    assert put.status_code == 200
    got = httpx.get(data["access_url"])
    _assert_safe(got, inline=False)
    assert got.content == SCRIPT


def test_disposition_rules(tmp_path: Path) -> None:
    assert is_passive("image/png") and is_passive("audio/mpeg") and is_passive("text/plain; charset=utf-8")
    for _, content_type in ACTIVE:
        assert not is_passive(content_type)
    header = content_disposition('a"b\\c\u00ef.html', "text/html")
    assert header.startswith('attachment; filename="a_b_c_.html"') and "filename*=UTF-8''a%22b%5Cc%C3%AF.html" in header
