"""The same rasa-sdk actions, served unchanged to a Rasa deployment by rasa-sdk's action server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tracker(text: str, intent: str) -> dict:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.93}, "entities": [],
              "metadata": {"tone": "neutral"}}
    return {"sender_id": "rasa-user-1", "slots": {}, "latest_message": latest,
            "events": [{"event": "user", "text": text, "parse_data": latest}], "paused": False,
            "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen"}


@pytest.fixture(scope="module")
def action_server(product):
    port = _free_port()
    # SANIC_RESPONSE_TIMEOUT: the first answer loads the models in the action server process
    env = dict(os.environ, SANIC_HOST="127.0.0.1", SANIC_RESPONSE_TIMEOUT="900",
               HYBRIDESK_DATA_DIR=str(product.settings.data_dir),
               HYBRIDESK_MAX_NEW_TOKENS="64", HYBRIDESK_GENERATION_TIMEOUT_S="600")
    proc = subprocess.Popen([sys.executable, "-m", "rasa_sdk", "--actions", "bot.conversation.actions",
                             "-p", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
        if proc.poll() is not None:
            pytest.fail(f"action server exited: {proc.stdout.read().decode()[-2000:]}")
    else:
        proc.kill()
        pytest.fail("action server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_action_server_lists_our_actions(action_server):
    names = {a["name"] for a in httpx.get(action_server + "/actions", timeout=10).json()}
    assert {"action_answer_from_policy", "action_handoff", "action_lookup_order", "action_escalate",
            "action_clarify"} <= names


def test_rasa_webhook_runs_order_lookup(action_server):
    def lookup(*turns: str) -> dict:
        tracker = _tracker(turns[-1], "track_order")
        tracker["events"] = [{"event": "user", "text": t} for t in turns[:-1]] + tracker["events"]
        call = {"next_action": "action_lookup_order", "sender_id": "rasa-user-1", "version": "3.0.0",
                "tracker": tracker, "domain": {}}
        r = httpx.post(action_server + "/webhook", json=call, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    # the number alone shows nothing: the e-mail address the order was placed with is asked for
    body = lookup("where is my order LK-44098125?")
    asked = body["responses"][0]["text"]
    assert "LK-44098125" in asked and "e-mail address" in asked and "shipped" not in asked
    assert {"event": "slot", "name": "order_number", "value": "LK-44098125"}.items() <= body["events"][0].items()
    # given next (any case), the order's status; a wrong address reads as a wrong number would
    shown = lookup("where is my order LK-44098125?", "It's T.Wouters@mail.example")["responses"][0]
    assert "shipped" in shown["text"] and shown["custom"]["verified"] is True
    wrong = lookup("where is my order LK-44098125?", "it's someone@else.example")["responses"][0]["text"]
    missing = lookup("where is my order LK-00000001? someone@else.example")["responses"][0]["text"]
    assert "shipped" not in wrong and wrong == missing.replace("LK-00000001", "LK-44098125")


def test_rasa_webhook_runs_the_grounded_answer(action_server):
    call = {"next_action": "action_answer_from_policy", "sender_id": "rasa-user-1", "version": "3.0.0",
            "tracker": _tracker("How long do I have to send something back?", "check_refund_policy"),
            "domain": {}}
    r = httpx.post(action_server + "/webhook", json=call, timeout=300)
    assert r.status_code == 200, r.text
    response = r.json()["responses"][0]
    assert response["text"] and "{{" not in response["text"]
    assert response["custom"]["citations"], "the answer cites the knowledge base"
