"""Files in and out of workflows: a declared ``file`` input is stored before the run is queued
(local ``Path`` / file object / ``runyard.File`` auto-uploaded by the SDK, ``data:`` URIs, Sim's
base64 file objects, ``runyard://`` refs) and reaches an app block as a readable file; file
outputs come back to the SDK as FileOutput. Refusals: private URLs (URL guard), unknown refs,
non-files. ``FileService.ingest`` fetching a real local HTTP server: type, name, redirects, size cap.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

import runyard
from runyard import Client
from runyard.client.files import FileOutput
from runyard.client.tasks import Task
from runyard.config import load_config
from runyard.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError, ValidationError
from runyard.files import data_uri
from runyard.gateway import Gateway
from runyard.services.urlguard import UnsafeURLError
from runyard.workflows import Workflow
from support.gateway import GatewayProcess
from support.loopback import LoopbackServer
from test_workflows_e2e import unique, wf_client, wf_config_path, wf_server, workflows_toml  # noqa: F401  (fixtures)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))


def inverted(data: bytes) -> bytes:
    return bytes(255 - b for b in data)


def invert_flow(name: str) -> dict[str, Any]:
    """input(image: file, extra: file[]) → app tests/invert (reads the bytes) → output."""
    return (
        Workflow(name)
        .input(image="file", extras={"type": "array", "items": "file", "default": []})
        .app("inv", "tests/invert", image="{{ start.image }}", suffix=".inv")
        .output(inverted="{{ inv.result }}", original="{{ start.image }}", extras="{{ start.extras }}")
        .to_dict()
    )


def published(client: Client, prefix: str) -> str:
    name = unique(prefix)
    client.workflows.save(invert_flow(name))
    client.workflows.publish(name)
    return name


def test_local_files_are_uploaded_and_outputs_are_file_outputs(wf_client: Client, tmp_path: Path) -> None:  # noqa: F811
    name = published(wf_client, "files-sdk")
    src = tmp_path / "in.png"
    src.write_bytes(PNG)

    result = wf_client.workflows.execute(name, {"image": src})
    assert result["success"] is True, result["error"]
    out = result["output"]
    assert isinstance(out["inverted"], FileOutput) and out["inverted"].read() == inverted(PNG)
    assert isinstance(out["original"], FileOutput) and out["original"].read() == PNG
    assert wf_client.files.get(out["inverted"].uri).filename == "in.png.inv"

    task = wf_client.run(f"{name}@main", {"image": src})  # the app path: same upload, same FileOutput
    assert isinstance(task, Task)
    assert task.output["inverted"].read() == inverted(PNG)

    with src.open("rb") as fh:
        extra = runyard.File(data=b"more", filename="more.txt")
        result = wf_client.workflows.execute(name, {"image": fh, "extras": [extra, src]})
    assert result["output"]["original"].read() == PNG
    assert [f.read() for f in result["output"]["extras"]] == [b"more", PNG]


def test_data_uri_input_is_stored_before_queueing(wf_client: Client) -> None:  # noqa: F811
    name = published(wf_client, "files-datauri")
    queued = wf_client.workflows.execute(name, {"image": data_uri(PNG, "image/png")}, async_execution=True)
    job = wf_client.jobs.wait(queued["task_id"], polling_interval=0.05, timeout=20)
    assert job["status"] == "completed"
    assert job["output"]["inverted"].read() == inverted(PNG)
    payload = wf_client.tasks.get(queued["task_id"]).input["input"]
    assert payload["image"].startswith("runyard://files/")  # no base64 in the task row
    assert wf_client.files.get(payload["image"]).content_type == "image/png"


def test_refusals(wf_client: Client) -> None:  # noqa: F811
    name = published(wf_client, "files-refused")
    with pytest.raises(InvalidRequestError) as private:
        wf_client.workflows.execute(name, {"image": "http://127.0.0.1:9/secret.png"})
    assert private.value.status == 400 and private.value.code == "url_not_allowed"
    with pytest.raises(InvalidRequestError) as sim_url:
        wf_client.workflows.execute(name, {"image": {"type": "url", "data": "http://10.0.0.1/x.png"}})
    assert sim_url.value.code == "url_not_allowed"

    missing = "runyard://files/01234567-89ab-7def-8123-456789abcdef"
    with pytest.raises(NotFoundError) as unknown:
        wf_client.workflows.execute(name, {"image": missing})
    assert unknown.value.status == 404 and unknown.value.code == "file_not_found"
    with pytest.raises(NotFoundError):
        wf_client.run(name, {"image": missing})

    for bad in (42, "just text", {"type": "file", "data": "data:text/plain;base64,@@@"}):
        with pytest.raises(ValidationError) as invalid:
            wf_client.workflows.execute(name, {"image": bad})
        assert invalid.value.status == 422 and invalid.value.code == "invalid_input"


def test_sim_client_file_object(wf_server: GatewayProcess) -> None:  # noqa: F811
    simstudio = pytest.importorskip("simstudio")
    with Client(base_url=wf_server.url, max_retries=0) as client:
        name = published(client, "files-sim")
        sim = simstudio.SimStudioClient(api_key="unused", base_url=wf_server.url)
        try:
            upload = io.BytesIO(PNG)
            upload.name = "/home/me/photo.png"
            result = sim.execute_workflow(name, {"image": upload})
        finally:
            sim.close()
        assert result.success is True, result.error
        original, out = result.output["original"], result.output["inverted"]
        assert original.startswith("runyard://files/") and out.startswith("runyard://files/")
        assert client.files.read(original) == PNG and client.files.read(out) == inverted(PNG)
        record = client.files.get(original)
        assert record.filename == "photo.png" and record.content_type == "image/png"


@pytest.fixture(scope="module")
def fn_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """Embedded, with ``apps.wf_files`` allowed for function blocks."""
    root = tmp_path_factory.mktemp("wf-files-fn")
    path = root / "runyard.toml"
    toml = workflows_toml(root, "http://127.0.0.1:9")
    path.write_text(toml.replace('modules = ["apps.flows", "apps.demo"]', 'modules = ["apps.flows", "apps.wf_files"]'))
    with Client.embedded(config=load_config(path), max_retries=0) as client:
        yield client


def test_function_block_gets_readable_files(fn_client: Client, tmp_path: Path) -> None:
    name = unique("files-fn")
    fn_client.workflows.save(
        Workflow(name)
        .input(doc="file", more={"type": "array", "items": {"type": "file"}, "default": []})
        .function("d", "apps.wf_files:describe", doc="{{ start.doc }}", others="{{ start.more }}")
        .function("s", "apps.wf_files:shout_file", text="{{ d.upper }}!")
        .output(description="{{ d }}", shouted="{{ s.result }}")
        .to_dict()
    )
    fn_client.workflows.publish(name)
    doc = tmp_path / "note.txt"
    doc.write_text("hello files")
    result = fn_client.workflows.execute(name, {"doc": doc, "more": [data_uri(b"abc"), doc]})
    assert result["success"] is True, result["error"]
    assert result["output"]["description"] == {
        "filename": "note.txt",
        "size": 11,
        "upper": "HELLO FILES",
        "others": [3, 11],
    }
    shouted = result["output"]["shouted"]
    assert isinstance(shouted, FileOutput) and shouted.read() == b"HELLO FILES!"


# --------------------------------------------------------------------------- ingest, in process


class _Files(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/go":
            self.send_response(302)
            self.send_header("Location", "/a/cat%20pic.png?x=1")
            self.end_headers()
        elif self.path.startswith("/a/cat%20pic.png"):
            self._send(PNG, "image/png")
        elif self.path == "/big":
            self._send(b"x" * 4096, "application/octet-stream")
        else:
            self.send_response(404)
            self.end_headers()

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.end_headers()  # no Content-Length: the cap must hold while streaming
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    with LoopbackServer(_Files) as server:
        yield server.url


async def test_ingest_fetches_urls_and_other_forms(tmp_path: Path, origin: str) -> None:
    (tmp_path / "runyard.toml").write_text(f"""
[storage]
url = "sqlite+aiosqlite:///{tmp_path / "runyard.db"}"

[files]
dir = "{tmp_path / "files"}"
max_upload_bytes = 1024
""")
    gw = Gateway(load_config(tmp_path / "runyard.toml"))
    await gw.start()
    try:
        files = gw.files
        fetched = await files.ingest(f"{origin}/go", allow_private=True)  # redirect followed
        assert fetched.filename == "cat pic.png" and fetched.content_type == "image/png"
        assert await files.read(fetched) == PNG
        sim = await files.ingest(
            {"type": "url", "data": f"{origin}/a/cat%20pic.png", "name": "mine.png"}, allow_private=True
        )
        assert sim.filename == "mine.png" and sim.size == len(PNG)

        with pytest.raises(UnsafeURLError):
            await files.ingest(f"{origin}/go")  # private address, not allowed
        with pytest.raises(PayloadTooLargeError) as big:
            await files.ingest(f"{origin}/big", allow_private=True)
        assert big.value.status == 413 and big.value.code == "file_too_large"
        with pytest.raises(ValidationError) as gone:
            await files.ingest(f"{origin}/missing", allow_private=True)
        assert gone.value.code == "file_fetch_failed"

        inline = await files.ingest({"type": "file", "data": data_uri(b"hi", "text/plain"), "name": "../a.txt"})
        assert inline.filename == "a.txt" and inline.content_type == "text/plain"
        assert (await files.ingest(inline.uri)).id == inline.id
        assert (await files.ingest({"uri": inline.uri, "filename": "a.txt"})).id == inline.id
        assert (await files.ingest({"id": inline.id})).id == inline.id
        assert (await files.ingest(runyard.File(inline.uri))).id == inline.id
        with pytest.raises(PayloadTooLargeError):
            await files.ingest(data_uri(b"y" * 2048))
    finally:
        await gw.aclose()


def test_a_file_inputs_default_is_stored_too(fn_client: Client) -> None:
    name = unique("files-default")
    fn_client.workflows.save(
        Workflow(name)
        .input(doc={"type": "file", "default": data_uri(b"fallback text", "text/plain")})
        .function("d", "apps.wf_files:describe", doc="{{ start.doc }}")
        .output(upper="{{ d.upper }}", size="{{ d.size }}")
        .to_dict()
    )
    fn_client.workflows.publish(name)
    queued = fn_client.workflows.execute(name, {}, async_execution=True)
    job = fn_client.jobs.wait(queued["task_id"], polling_interval=0.05, timeout=20)
    assert job["status"] == "completed" and job["output"] == {"upper": "FALLBACK TEXT", "size": 13}
    stored = fn_client.tasks.get(queued["task_id"]).input["input"]["doc"]
    assert stored.startswith("runyard://files/")  # stored before queueing, like a given file
