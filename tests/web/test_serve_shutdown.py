"""`hybridesk serve` stops promptly on SIGTERM/SIGINT while a widget holds its event stream open.

The server runs in a subprocess through the real ``bot.server.serve`` (the same ``uvicorn.run``
call as the CLI; fake models, so nothing heavy loads), a customer's event stream is held open,
and the signal must stop the process within a few seconds with a clean exit status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from web_fakes import SSEReader, start_conversation

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from pathlib import Path
sys.path[:0] = [{tests!r}, {web!r}]
from web_fakes import build_services
from bot.server import serve
services = build_services(Path({data!r}))
from alembic import command
from bot.db.migrate import alembic_config
command.stamp(alembic_config(services.settings.resolved_database_url), "head")  # (tables made by create_all)
serve(services.settings, host="127.0.0.1", port={port}, services=services)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    code = CHILD.format(tests=str(ROOT / "tests"), web=str(ROOT / "tests" / "web"), data=str(tmp_path / "data"),
                        port=port)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("serve did not start:\n" + (tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    try:
        yield proc, url, tmp_path / "serve.log"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_promptly_while_an_event_stream_is_open(served, sig):
    proc, url, log = served
    with httpx.Client(base_url=url, timeout=10) as client:
        cid, headers = start_conversation(client)
    stream = SSEReader(f"{url}/api/conversations/{cid}/events", headers)
    stream.start()
    assert stream.ready.wait(10), "the event stream did not become ready"
    stream.next("ready")
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve still running 8 s after {sig.name} with an event stream open:\n{log.read_text()}")
    elapsed = time.monotonic() - started
    stream.stop()
    assert code == 0, log.read_text()
    # the stream was ended by the server (the widget reconnects), not cut by a forced exit
    assert elapsed < 3, f"took {elapsed:.1f} s\n{log.read_text()}"
    assert "timeout graceful shutdown exceeded" not in log.read_text()


def test_the_access_log_keeps_no_typed_text_or_token_from_a_query():
    # security QA: transcript searches and KB test questions (?q=anna@mail.example) were logged as typed
    import logging

    from bot.server import RedactTokens

    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/console/transcripts?q=anna%40mail.example&page=2&token=abc",
                                "1.1", 200), None)
    assert RedactTokens().filter(record)
    line = record.getMessage()
    assert "anna" not in line and "abc" not in line and "page=2" in line and "q=[redacted]" in line
