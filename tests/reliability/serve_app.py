"""Test-only server launcher: the real app under real uvicorn, with a scriptable generator.

``HYBRIDESK_GENERATOR`` can only pick the real backends, so the reliability tests and the load
benchmark start the server through this script instead of ``hybridesk serve``. It builds
``create_app(settings, Services(settings, generator=...))`` exactly as ``bot.server.serve`` does
(same ``uvicorn.run`` arguments, same access log) and adds only what a measurement needs:

* ``--generator scripted``: :class:`FaultyGenerator`, a ``ScriptedGenerator`` that streams one
  default reply word by word (``--delay`` seconds per word, to stand in for model time) and obeys
  fault markers found in the customer's message: ``FAULT-RAISE`` fails mid-stream, ``FAULT-HANG``
  never finishes (a hung model);
* ``--models fake``: the web tests' keyword knowledge base and rule NLU (no model loads), for the
  fast tests; ``--models real`` uses the initialised data dir's NLU and knowledge index;
* ``--limits unlimited``: every load customer comes from 127.0.0.1, so the per-IP limit would
  measure the limiter, not the server.

Usage::

    python tests/reliability/serve_app.py --data-dir D --port 8765 [--database-url URL]
        [--models fake|real] [--generator scripted|real] [--delay 0.05] [--limits default|unlimited]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "web"))

from knowledge.errors import Unavailable  # noqa: E402
from models.generation import ScriptedGenerator  # noqa: E402

DEFAULT_REPLY = ("You can return most items within 30 days of delivery. "
                 "Start the return from your order page and we will refund you within 5 working days.")
HANG_SECONDS = 3600.0


class FaultyGenerator(ScriptedGenerator):
    """A ScriptedGenerator with model-like latency and fault markers taken from the prompt."""

    def __init__(self, *, default: str = DEFAULT_REPLY, delay: float = 0.0) -> None:
        super().__init__(default=default, model_id="scripted-faulty")
        self.delay = delay

    def _stream(self, messages, state, **kwargs):
        prompt = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        fault = re.search(r"FAULT-(RAISE|HANG)", prompt)
        for i, piece in enumerate(super()._stream(messages, state, **kwargs)):
            if self.delay:
                time.sleep(self.delay)
            if fault and i == 2:
                if fault.group(1) == "RAISE":
                    raise Unavailable("injected generator failure", code="generator_failed")
                time.sleep(HANG_SECONDS)  # a model that stopped making progress
            yield piece


def build_services(args: argparse.Namespace):
    from bot.services import Services
    from bot.settings import Settings

    overrides = {"env": "test", "data_dir": Path(args.data_dir), "log_level": args.log_level,
                 "nlu_use_public_data": False, "max_new_tokens": args.max_new_tokens}
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.base_model_dir:
        overrides["base_model_dir"] = Path(args.base_model_dir)
    if args.generation_timeout:
        overrides["generation_timeout_s"] = args.generation_timeout
    settings = Settings(**overrides)
    parts = {}
    if args.generator == "scripted":
        parts["generator"] = FaultyGenerator(delay=args.delay)
    if args.models == "fake":
        from web_fakes import FakeKnowledge, FakeNLU

        parts.update(knowledge=FakeKnowledge(), nlu=FakeNLU())
    services = Services(settings, **parts)
    if args.models == "fake":
        from bot.db.models import BotBase

        BotBase.metadata.create_all(services.db.engine)  # idempotent: a restart keeps the data
    return services


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--database-url")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", choices=["fake", "real"], default="fake")
    parser.add_argument("--generator", choices=["scripted", "real"], default="scripted")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per streamed word (scripted)")
    parser.add_argument("--limits", choices=["default", "unlimited"], default="unlimited")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--base-model-dir")
    parser.add_argument("--generation-timeout", type=float)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--no-recover", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import logging

    import uvicorn

    from bot.web.app import create_app
    from bot.web.ratelimit import ChatLimits

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    services = build_services(args)
    app = create_app(services.settings, services, warm_up=args.models == "real", recover=not args.no_recover)
    if args.limits == "unlimited":
        app.state.chat_limits = ChatLimits.unlimited()
    # the same call as bot.server.serve (access log included: the log-leak test reads it)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower(), proxy_headers=False)


if __name__ == "__main__":
    main()
