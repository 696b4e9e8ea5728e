"""Files end to end over both transports: a real ``runyard serve`` subprocess (HTTP) and the
gateway in-process (embedded). Uploads, metadata, downloads through FileOutput, sniffing,
size limits, path traversal, 404s, auth, and the SDK's input/output helpers."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from runyard import AsyncClient, AuthenticationError, Client, File, NotFoundError, PayloadTooLargeError
from runyard.client.files import FileOutput, UploadedFile, wrap_outputs
from runyard.config import hash_api_key, load_config
from runyard.files import is_file_schema, parse_file_ref, sanitize_filename
from runyard.gateway import Gateway
from support.gateway import GatewayProcess

MAX_UPLOAD = 2 * 1024 * 1024
API_KEY = "sk-files-test"

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + os.urandom(64)
SAMPLES = {
    "image/png": PNG,
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + os.urandom(32),
    "image/gif": b"GIF89a" + os.urandom(32),
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 " + os.urandom(32),
    "application/pdf": b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
    "audio/wav": b"RIFF\x24\x08\x00\x00WAVEfmt " + os.urandom(32),
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00" + os.urandom(32),
    "audio/ogg": b"OggS\x00\x02" + os.urandom(32),
    "application/json": b'  {"hello": ["world", 1, 2]}',
    "text/plain": "just some text, ünïcödé\n".encode(),
}


def _toml(root: Path, *, api_keys: list[str] | None = None) -> str:
    keys = f"api_keys = {api_keys!r}\n".replace("'", '"') if api_keys else ""
    return (
        f"[server]\n{keys}\n"
        f'[storage]\nurl = "sqlite+aiosqlite:///{root}/runyard.db"\nrecord_inferences = false\n\n'
        f'[files]\ndir = "{root}/files"\nmax_upload_bytes = {MAX_UPLOAD}\n'
    )


def _write_config(root: Path, **kw: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "runyard.toml"
    path.write_text(_toml(root, **kw))  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def http_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    root = tmp_path_factory.mktemp("files-http")
    server = GatewayProcess(_write_config(root)).start()
    try:
        yield server, root
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["http", "embedded"])
def env(
    request: pytest.FixtureRequest, http_gateway: tuple[GatewayProcess, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Client, Path]]:
    """(client, gateway root): the files live under ``root/files``."""
    if request.param == "http":
        server, root = http_gateway
        client = Client(base_url=server.url, max_retries=0)
    else:
        root = tmp_path_factory.mktemp("files-embedded")
        client = Client.embedded(load_config(_write_config(root)), max_retries=0)
    try:
        yield client, root
    finally:
        client.close()


@pytest.fixture
def client(env: tuple[Client, Path]) -> Client:
    return env[0]


def _tmp_leftovers(root: Path) -> list[Path]:
    return list((root / "files" / "tmp").iterdir())


def _blob_files(root: Path) -> list[Path]:
    return [p for p in (root / "files").rglob("*") if p.is_file() and p.parent.name != "tmp"]


# --------------------------------------------------------------------------- upload & download


def test_upload_bytes_metadata_and_download(client: Client) -> None:
    up = client.files.upload(PNG)
    assert isinstance(up, UploadedFile)
    assert up.uri == f"runyard://files/{up.id}"
    assert parse_file_ref(up.uri) == up.id
    assert up.content_type == "image/png"
    assert up.filename == "file.png"
    assert up.size == len(PNG)
    assert up.access_url == f"{client.base_url}/v1/files/{up.id}/content"
    assert client.files.get(up.id) == up
    assert client.files.get(up.uri) == up
    out = client.files.output(up.uri)
    assert out.read() == PNG
    assert str(out) == up.access_url
    assert client.files.read(up.id) == PNG


def test_upload_path_str_path_and_file_object(client: Client, tmp_path: Path) -> None:
    data = os.urandom(5000)
    path = tmp_path / "photo.bin"
    path.write_bytes(data)
    by_str = client.files.create(str(path))
    by_path = client.files.upload(path, filename="renamed.dat", content_type="application/x-custom")
    with path.open("rb") as fh:
        by_obj = client.files.upload(fh)
    assert by_str.filename == "photo.bin" and by_obj.filename == "photo.bin"
    assert by_path.filename == "renamed.dat" and by_path.content_type == "application/x-custom"
    assert len({by_str.id, by_path.id, by_obj.id}) == 3
    assert by_str.sha256 == by_path.sha256 == by_obj.sha256
    for up in (by_str, by_path, by_obj):
        assert client.files.read(up.id) == data
    # an unseekable stream goes out chunked (no Content-Length)
    pipe_r, pipe_w = os.pipe()
    os.write(pipe_w, data)
    os.close(pipe_w)
    with os.fdopen(pipe_r, "rb") as fh:
        piped = client.files.upload(fh, filename="piped.bin")
    assert client.files.read(piped.id) == data


def test_large_file_download_every_way(client: Client, tmp_path: Path) -> None:
    data = os.urandom(MAX_UPLOAD - 1000)  # several download chunks
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    up = client.files.upload(src)
    assert up.size == len(data)
    out = client.files.output(up.id)

    chunks = list(out)
    assert len(chunks) > 2 and b"".join(chunks) == data
    saved = out.save(tmp_path / "saved.bin")
    assert saved.read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]

    async def from_another_loop() -> tuple[bytes, list[bytes], Path]:
        read = await out.async_read()
        pieces = [c async for c in out]
        path = await out.async_save(tmp_path / "async-saved.bin")
        return read, pieces, path

    read, pieces, path = asyncio.run(from_another_loop())
    assert read == data and b"".join(pieces) == data and len(pieces) > 2
    assert path.read_bytes() == data


def test_stopping_iteration_early_releases_the_download(client: Client) -> None:
    up = client.files.upload(os.urandom(MAX_UPLOAD // 2))
    out = client.files.output(up.id)
    for _chunk in out:
        break
    assert client.files.read(up.id)  # the client still works


@pytest.mark.parametrize("expected", sorted(SAMPLES))
def test_content_type_sniffed(client: Client, expected: str) -> None:
    up = client.files.upload(SAMPLES[expected])
    assert up.content_type == expected
    generic = client.files.upload(SAMPLES[expected], content_type="application/octet-stream")
    assert generic.content_type == expected


def test_declared_content_type_and_extension(client: Client) -> None:
    assert client.files.upload(PNG, content_type="image/x-special").content_type == "image/x-special"
    assert client.files.upload(b"\x00\x01\x02", filename="clip.mp4").content_type == "video/mp4"
    assert client.files.upload(b"\x00\x01\x02").content_type == "application/octet-stream"
    assert client.files.upload(b"\x00\x01", content_type="not a type").content_type == "application/octet-stream"


def test_multipart_upload(client: Client) -> None:
    data = client.request(
        "POST", "/v1/files", files={"file": ("pic.png", PNG, "application/octet-stream")}, idempotent_post=False
    )
    assert data["filename"] == "pic.png" and data["content_type"] == "image/png" and data["size"] == len(PNG)
    named = client.request(
        "POST",
        "/v1/files",
        files={"file": ("x.bin", b"hello")},
        data={"filename": "../greeting.txt", "content_type": "text/x-greeting"},
        idempotent_post=False,
    )
    assert named["filename"] == "greeting.txt" and named["content_type"] == "text/x-greeting"
    assert client.files.read(named["id"]) == b"hello"


def test_multipart_without_file_field(client: Client) -> None:
    with pytest.raises(Exception) as info:
        client.request("POST", "/v1/files", files={"other": ("a.txt", b"x")}, idempotent_post=False)
    assert getattr(info.value, "status", None) == 400
    assert getattr(info.value, "code", None) == "missing_file"


# --------------------------------------------------------------------------- limits


def test_oversized_uploads_are_413(env: tuple[Client, Path], tmp_path: Path) -> None:
    client, root = env
    big = os.urandom(MAX_UPLOAD + 1)
    before = len(_blob_files(root))

    with pytest.raises(PayloadTooLargeError) as info:  # raw, declared Content-Length
        client.files.upload(big)
    assert info.value.status == 413 and info.value.code == "file_too_large"

    path = tmp_path / "big.bin"
    path.write_bytes(big)
    with pytest.raises(PayloadTooLargeError):
        client.files.upload(path)

    pipe_r, pipe_w = os.pipe()  # raw, chunked: no Content-Length at all, caught while streaming
    with os.fdopen(pipe_r, "rb") as reader, os.fdopen(pipe_w, "wb") as writer:

        def feed() -> None:
            writer.write(big)
            writer.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        with pytest.raises(PayloadTooLargeError) as info:
            client.files.upload(reader, filename="stream.bin")
        assert info.value.code == "file_too_large"
        reader.read()  # unblock the feeder if the upload stopped early
        feeder.join()

    with pytest.raises(PayloadTooLargeError) as info:  # multipart
        client.request("POST", "/v1/files", files={"file": ("big.bin", big)}, idempotent_post=False)
    assert info.value.code == "file_too_large"

    assert _tmp_leftovers(root) == []
    assert len(_blob_files(root)) == before


def test_exactly_the_limit_is_accepted(client: Client) -> None:
    data = os.urandom(MAX_UPLOAD)
    up = client.files.upload(data)
    assert up.size == MAX_UPLOAD and client.files.read(up.id) == data


async def test_lying_content_length_is_caught_while_streaming(tmp_path: Path) -> None:
    """In-process the body is not framed by a socket: a small declared length proves nothing."""
    cfg = load_config(_write_config(tmp_path))
    async with AsyncClient.embedded(cfg, max_retries=0) as client:

        async def body() -> AsyncIterator[bytes]:
            for _ in range(MAX_UPLOAD // (256 * 1024) + 2):
                yield os.urandom(256 * 1024)

        with pytest.raises(PayloadTooLargeError) as info:
            await client.request(
                "POST", "/v1/files", content=body(), headers={"Content-Length": "10"}, idempotent_post=False
            )
        assert info.value.code == "file_too_large"
    assert _tmp_leftovers(tmp_path) == []


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("C:\\Users\\x\\a.png", "a.png"),
        ("a\x00b\x1fc\x7f.txt", "abc.txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),
        ("..", "file.txt"),
        ("../", "file.txt"),
        ("  .hidden  ", "hidden"),
        ('we"ird<>|?*.txt', "we_ird_____.txt"),
        ("ok name (1).txt", "ok name (1).txt"),
    ],
)
def test_path_traversal_names_are_neutralised(env: tuple[Client, Path], name: str, expected: str) -> None:
    client, root = env
    up = client.files.upload(b"plain text", filename=name)
    assert up.filename == expected
    assert "/" not in up.filename and "\\" not in up.filename
    multipart = client.request(
        "POST", "/v1/files", files={"file": (name, b"plain text", "text/plain")}, idempotent_post=False
    )
    sent = multipart["filename"]
    assert "/" not in sent and "\\" not in sent and sent.isprintable() and not sent.startswith(".")
    if name.isprintable():  # httpx percent-encodes control characters in multipart names
        assert sent == expected
    # nothing but content-addressed blobs was written, all inside the files directory
    for blob in _blob_files(root):
        assert blob.resolve().is_relative_to((root / "files").resolve())
        assert len(blob.name) == 64
    assert not (root / "etc").exists() and not (root.parent / "etc" / "passwd").exists()


def test_sanitize_filename_unit() -> None:
    assert sanitize_filename(None) == "file"
    assert sanitize_filename("x" * 300 + ".png").endswith(".png")
    assert len(sanitize_filename("é" * 300 + ".png").encode()) <= 255


def test_download_headers(env: tuple[Client, Path]) -> None:
    client, _ = env
    up = client.files.upload(PNG, filename="../../naïve pic.png")
    http = client.async_client._http

    async def fetch(headers: dict[str, str]) -> httpx.Response:
        return await http.get(f"/v1/files/{up.id}/content", headers=headers)

    def get(headers: dict[str, str] | None = None) -> httpx.Response:
        return client._portal.call(fetch(headers or {}))

    full = get()
    assert full.status_code == 200 and full.content == PNG
    assert full.headers["content-type"] == "image/png"
    assert full.headers["content-length"] == str(len(PNG))
    assert full.headers["x-content-type-options"] == "nosniff"
    disposition = full.headers["content-disposition"]
    assert disposition.startswith("inline;") and "filename*=UTF-8''na%C3%AFve%20pic.png" in disposition
    assert "/" not in disposition.split("filename=")[1].split(";")[0]

    part = get({"Range": "bytes=2-9"})
    assert part.status_code == 206 and part.content == PNG[2:10]
    assert part.headers["content-range"] == f"bytes 2-9/{len(PNG)}"
    assert get({"Range": "bytes=-4"}).content == PNG[-4:]
    assert get({"Range": f"bytes={len(PNG)}-"}).status_code == 416
    assert get({"If-None-Match": full.headers["etag"]}).status_code == 304


# --------------------------------------------------------------------------- errors & auth


def test_unknown_file_is_404(client: Client) -> None:
    missing = str(uuid.uuid4())
    for call in (
        lambda: client.files.get(missing),
        lambda: client.files.read(missing),
        lambda: client.request("GET", "/v1/files/not-an-id"),
        lambda: client.request("GET", "/v1/files/..%2F..%2Fetc%2Fpasswd/content"),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.code in ("file_not_found", "route_not_found")
    with pytest.raises(NotFoundError) as info:
        client.files.get(missing)
    assert info.value.code == "file_not_found"


@pytest.fixture(scope="module", params=["http", "embedded"])
def auth_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    root = tmp_path_factory.mktemp(f"files-auth-{request.param}")
    path = _write_config(root, api_keys=[hash_api_key(API_KEY)])
    if request.param == "http":
        server = GatewayProcess(path).start()
        try:
            yield "http", server
        finally:
            server.stop()
    else:
        yield "embedded", load_config(path)


def _auth_client(auth_env: tuple[str, object], key: str | None) -> Client:
    kind, target = auth_env
    if kind == "http":
        assert isinstance(target, GatewayProcess)
        return Client(base_url=target.url, api_key=key or "", max_retries=0)
    return Client.embedded(target, api_key=key or "", max_retries=0)  # type: ignore[arg-type]


def test_auth_applies_to_files(auth_env: tuple[str, object]) -> None:
    with _auth_client(auth_env, API_KEY) as good:
        up = good.files.upload(PNG)
        assert good.files.output(up.id).read() == PNG
        if auth_env[0] == "http":
            bad = Client(base_url=good.base_url, api_key="", max_retries=0)
            try:
                for call in (
                    lambda: bad.files.upload(PNG),
                    lambda: bad.files.get(up.id),
                    lambda: bad.files.read(up.id),
                ):
                    with pytest.raises(AuthenticationError) as info:
                        call()
                    assert info.value.status == 401
            finally:
                bad.close()
    if auth_env[0] == "embedded":
        with _auth_client(auth_env, None) as bad:
            with pytest.raises(AuthenticationError):
                bad.files.upload(PNG)
            with pytest.raises(AuthenticationError):
                bad.files.get(str(uuid.uuid4()))


# --------------------------------------------------------------------------- SDK helpers


def test_prepare_inputs_auto_upload(client: Client, tmp_path: Path) -> None:
    img = tmp_path / "in.png"
    img.write_bytes(PNG)
    doc = tmp_path / "doc.txt"
    doc.write_bytes(b"a document")
    previous = client.files.upload(b"earlier")
    raw = {
        "image": str(img),
        "nested": {"docs": [doc, b"raw bytes", io.BytesIO(b"from a file object")]},
        "prompt": "make it pop",
        "url": "https://example.com/a.png",
        "missing": str(tmp_path / "nope.png"),
        "again": previous,
        "n": 3,
    }
    out = client.files.prepare_inputs(raw)
    assert raw["image"] == str(img)  # the caller's dict is left alone
    assert out["prompt"] == "make it pop" and out["n"] == 3
    assert out["url"] == "https://example.com/a.png"
    assert out["missing"] == str(tmp_path / "nope.png")
    assert out["again"] == previous.uri
    refs = [out["image"], *out["nested"]["docs"]]
    assert all(parse_file_ref(r) for r in refs)
    contents = [client.files.read(r) for r in refs]
    assert contents == [PNG, b"a document", b"raw bytes", b"from a file object"]
    assert client.files.get(out["image"]).filename == "in.png"

    kept = client.files.prepare_inputs({"image": str(img), "p": img}, auto_upload=False)
    assert kept["image"] == str(img) and parse_file_ref(kept["p"])


def test_prepare_inputs_base64(client: Client, tmp_path: Path) -> None:
    img = tmp_path / "in.png"
    img.write_bytes(PNG)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(4096))
    out = client.files.prepare_inputs(
        {"image": str(img), "big": big, "blob": b"hi there"}, file_encoding_strategy="base64", base64_max_bytes=1024
    )
    assert out["image"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert out["blob"] == "data:text/plain;base64," + base64.b64encode(b"hi there").decode()
    assert parse_file_ref(out["big"])  # too big to inline: uploaded instead
    with pytest.raises(ValueError):
        client.files.prepare_inputs({}, file_encoding_strategy="zip")  # type: ignore[arg-type]


def test_wrap_outputs(client: Client, tmp_path: Path) -> None:
    a = client.files.upload(PNG, filename="a.png")
    b = client.files.upload(b"second")
    output = {
        "image": a.uri,
        "gallery": [{"uri": b.uri, "filename": "b.txt", "content_type": "text/plain", "size": 6}],
        "link": a.access_url,
        "other": "runyard-ish but not a ref",
        "record": {"uri": a.uri, "score": 0.9},
        "n": 1,
    }
    wrapped = client.files.wrap_outputs(output)
    image = wrapped["image"]
    assert isinstance(image, FileOutput) and image.id == a.id
    assert str(image) == a.access_url
    assert image.read() == PNG
    gallery = wrapped["gallery"][0]
    assert isinstance(gallery, FileOutput) and gallery.filename == "b.txt" and gallery.size == 6
    assert gallery.save(tmp_path / "b.txt").read_bytes() == b"second"
    assert isinstance(wrapped["link"], FileOutput) and wrapped["link"].id == a.id
    assert wrapped["other"] == output["other"] and wrapped["n"] == 1
    assert isinstance(wrapped["record"]["uri"], FileOutput) and wrapped["record"]["score"] == 0.9
    # outputs fed back as inputs become references again
    assert client.files.prepare_inputs({"again": image}) == {"again": a.uri}


async def test_async_client_in_its_own_loop(tmp_path: Path) -> None:
    cfg = load_config(_write_config(tmp_path))
    async with AsyncClient.embedded(cfg, max_retries=0) as client:
        data = os.urandom(700_000)
        up = await client.files.upload(data, filename="a.bin")
        out = client.files.wrap_outputs({"f": up.uri})["f"]
        assert await out.async_read() == data
        assert b"".join([c async for c in out]) == data
        assert (await out.async_save(tmp_path / "x.bin")).read_bytes() == data
        with pytest.raises(RuntimeError, match="async_read"):
            out.read()  # would deadlock this loop: refused with a pointer to the async form
        refs = await client.files.prepare_inputs({"p": up, "b": b"x"})
        assert refs["p"] == up.uri and parse_file_ref(refs["b"])
        assert wrap_outputs(refs, client)["b"].id == parse_file_ref(refs["b"])


# --------------------------------------------------------------------------- File type & service


class _In(BaseModel):
    image: File
    extras: list[File] = []


def test_file_type_schema_and_validation() -> None:
    schema = _In.model_json_schema()
    assert is_file_schema(schema["properties"]["image"])
    assert schema["properties"]["image"]["type"] == "string"
    fid = str(uuid.uuid4())
    model = _In.model_validate({"image": f"runyard://files/{fid}", "extras": ["data:text/plain;base64,aGk="]})
    assert model.image.id == fid
    assert model.extras[0].read_bytes() == b"hi" and model.extras[0].content_type == "text/plain"
    assert _In.model_validate({"image": "https://example.com/x.png"}).image.uri == "https://example.com/x.png"
    for bad in ("/etc/passwd", "../x.png", "file:///etc/passwd", 3):
        with pytest.raises(ValueError):
            _In.model_validate({"image": bad})
    assert _In(image=File(f"runyard://files/{fid}")).model_dump(mode="json") == {
        "image": f"runyard://files/{fid}",
        "extras": [],
    }
    with pytest.raises(ValueError):
        _In(image=File(data=b"x")).model_dump(mode="json")  # not stored yet


async def test_file_service_localize_and_store_outputs(tmp_path: Path) -> None:
    cfg = load_config(_write_config(tmp_path))
    gw = Gateway(cfg)
    await gw.start()
    try:
        src = tmp_path / "made.png"
        src.write_bytes(PNG)
        out: dict[str, Any] = {"a": File(data=b"generated", filename="gen.txt"), "b": [File(path=src)], "c": 1}
        await gw.files.store_outputs(out)
        assert _In(image=out["b"][0]).model_dump(mode="json")["image"] == out["b"][0].uri
        record = await gw.files.get(out["a"].uri)
        assert record.filename == "gen.txt" and record.content_type == "text/plain"
        assert await gw.files.read(record.id) == b"generated"

        model = _In.model_validate({"image": out["b"][0].uri, "extras": ["data:text/plain;base64,aGk="]})
        await gw.files.localize(model, workdir=tmp_path / "work")
        assert model.image.path is not None and model.image.path.name == "made.png"
        assert model.image.read_bytes() == PNG and model.image.content_type == "image/png"
        assert model.extras[0].uri is not None and model.extras[0].path is not None
        assert model.extras[0].path.read_bytes() == b"hi"

        bare = File(out["a"].uri)
        await gw.files.localize([bare])
        assert bare.read_bytes() == b"generated" and bare.size == 9

        with pytest.raises(NotFoundError):
            await gw.files.localize(File(f"runyard://files/{uuid.uuid4()}"))
        with pytest.raises(PayloadTooLargeError):
            await gw.files.put(b"x" * (MAX_UPLOAD + 1))
        assert gw.files.resolve_uri("runyard://files/not-a-uuid") is None
    finally:
        await gw.aclose()
