"""The one callback sink, against real HTTP on 127.0.0.1: recording, scripted replies, holds,
down and back on the same port, the control endpoints, and that it stays standard-library only
(the compose image is the bare Python base running this very file)."""

from __future__ import annotations

import ast
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from deltawatch_tools import callback_sink
from deltawatch_tools.callback_sink import HANG, CallbackSink, Reply, Request, SinkTimeout
from deltawatch_tools.local_state import free_port


def test_records_every_request_and_answers_from_the_script() -> None:
    seen: list[Request] = []
    with CallbackSink(on_request=seen.append) as sink:
        sink.script(Reply(503, {"Retry-After": "1"}), Reply(400))
        answers = [
            httpx.post(sink.url("/a"), content=b'{"n": %d}' % i, headers={"webhook-id": "w"})
            for i in range(3)
        ]
        assert [a.status_code for a in answers] == [503, 400, 200]
        assert answers[0].headers["retry-after"] == "1"
        requests = sink.wait_count(3)
        assert [r.answered for r in requests] == [503, 400, 200]
        assert [r.payload["n"] for r in requests] == [0, 1, 2]
        assert requests[0].method == "POST"
        assert requests[0].path == "/a"
        assert requests[0].headers["webhook-id"] == "w"
        assert requests[0].received_at <= requests[1].received_at <= time.time()
        assert seen == requests
        assert sink.served == {"503": 1, "400": 1, "200": 1}
        assert sink.requests_to("a") == requests
        assert sink.requests_to("/b") == []


def test_wait_for_raises_when_the_condition_never_holds() -> None:
    with CallbackSink() as sink, pytest.raises(SinkTimeout, match="got 0 requests"):
        sink.wait_count(1, timeout_s=0.2)


def test_a_hang_holds_until_released_and_a_delay_answers_late() -> None:
    with CallbackSink(default=Reply(HANG)) as sink:
        failures: list[BaseException] = []

        def post() -> None:
            try:
                httpx.post(sink.url(), content=b"{}", timeout=10)
            except httpx.HTTPError as error:
                failures.append(error)

        sender = threading.Thread(target=post)
        sender.start()
        [held] = sink.wait_count(1)
        assert held.answered == HANG
        assert sender.is_alive()
        sink.release_hanging()
        sender.join(5)
        assert not sender.is_alive()
        assert failures

        # Released, the sink holds no more: not even a delay. A delay far beyond any load on
        # the machine tells "not held" from "held" without a tight timing assertion.
        sink.answer_by_default(Reply(204, delay_s=60))
        sink.start()  # a no-op while listening: the release stays in force
        began = time.monotonic()
        assert httpx.post(sink.url(), content=b"{}", timeout=90).status_code == 204
        assert time.monotonic() - began < 30
        assert sink.served["hang"] == 2


def test_down_refuses_connections_and_comes_back_on_the_same_port() -> None:
    sink = CallbackSink().start()
    port = sink.port
    try:
        with httpx.Client() as client:  # a kept-alive connection, cut by the stop
            assert client.post(sink.url(), content=b"{}").status_code == 200
            sink.stop()
            assert sink.down
            with pytest.raises(httpx.HTTPError):
                client.post(sink.url(), content=b"{}")
        sink.answer_by_default(Reply(delay_s=0.3))
        sink.start()
        assert sink.port == port
        assert not sink.down
        began = time.monotonic()  # the stop released holds; the restart does not
        assert httpx.post(sink.url(), content=b"{}").status_code == 200
        assert time.monotonic() - began >= 0.3
        assert len(sink.requests) == 2
    finally:
        sink.stop()


def test_control_endpoints_list_filter_and_forget() -> None:
    with CallbackSink(max_records=2) as sink:
        for path in ("/x", "/y", "/y"):
            httpx.post(sink.url(path), json={"instance-id": "i"})
        assert httpx.get(sink.url("/healthz")).json() == {"alive": True}
        listed = httpx.get(sink.url("/received")).json()
        assert [r["path"] for r in listed] == ["/y", "/y"]  # the oldest went first
        assert listed[0]["body"] == {"instance-id": "i"}
        assert listed[0]["answered"] == 200
        assert httpx.get(sink.url("/received"), params={"path": "/x"}).json() == []
        assert httpx.delete(sink.url("/received")).status_code == 204
        assert httpx.get(sink.url("/received")).json() == []
        assert sink.requests == []


def test_the_file_runs_alone_as_the_compose_image_does(tmp_path: Path) -> None:
    source = Path(callback_sink.__file__)
    tree = ast.parse(source.read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported

    port = free_port()
    copy = tmp_path / "callback_sink.py"  # alone, as in the image: no package around it
    copy.write_bytes(source.read_bytes())
    process = subprocess.Popen(
        [sys.executable, str(copy)],
        env={"SINK_PORT": str(port), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert '"listening"' in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{url}/notify/s", json={"subscription-name": "s"}).status_code == 200
        assert '"subscription-name": "s"' in process.stdout.readline()
        [record] = httpx.get(f"{url}/received").json()
        assert record["body"] == {"subscription-name": "s"}
        process.terminate()
        assert process.wait(10) == 0
    finally:
        process.kill()
