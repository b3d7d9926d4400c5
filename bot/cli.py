"""`hybridesk` command line: init, serve, chat, db, users, and the kb / nlu / models groups.

Every handler raises ``HybrideskError`` subclasses; :func:`main` turns them into one clear
line on stderr and an exit code (2 for usage/config, 3 for unavailable dependencies, 1 otherwise).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from knowledge.errors import ConfigurationError, HybrideskError, Unavailable

log = logging.getLogger("hybridesk")

# Optional subcommand groups, each owned by the package that implements it.
COMMAND_GROUPS = ["bot.cli_kb", "bot.cli_nlu", "bot.cli_models", "bot.cli_corrections", "bot.cli_users"]


class CliContext:
    """Lazily built dependencies for command handlers (nothing heavy is loaded for `--help`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    @cached_property
    def settings(self):
        from bot.settings import get_settings

        return get_settings()

    @cached_property
    def services(self):
        from bot.services import Services

        return Services(self.settings)

    @property
    def db(self):
        return self.services.db

    def session(self):
        """A unit of work (commits on success) for handlers that need the database."""
        return self.services.db.unit_of_work()

    def knowledge(self):
        return self.services.knowledge


def _cmd_db_upgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.db.migrate import current, upgrade

    url = args.url or ctx.settings.resolved_database_url
    upgrade(url, args.revision)
    print(f"database at {_redact(url)} is at revision {current(url)}")
    return 0


def _cmd_db_downgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.db.migrate import current, downgrade

    url = args.url or ctx.settings.resolved_database_url
    downgrade(url, args.revision)
    print(f"database at {_redact(url)} is at revision {current(url) or 'base (empty)'}")
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<invalid url>"


def _cmd_init(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.bootstrap import initialise

    initialise(ctx.services, admin_email=args.admin_email, train_nlu=not args.skip_nlu, out=print)
    return 0


def _cmd_serve(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.server import serve

    settings = ctx.settings
    host = args.host or settings.host
    port = args.port or settings.port
    serve(settings, host=host, port=port, init=args.init)
    return 0


def _cmd_chat(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.terminal import run_chat

    return run_chat(ctx.services, sender=args.sender, once=args.message)


def build_parser(handlers: dict[str, Callable[..., int]] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridesk",
        description="Customer-support chatbot: a LoRA-tuned small model for tone, a knowledge base for facts.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("init", help="create the database, load the sample knowledge base, train NLU")
    p.add_argument("--admin-email", default="admin@larkspur.example", help="e-mail of the first admin")
    p.add_argument("--skip-nlu", action="store_true", help="do not train the intent/tone models")
    p.set_defaults(handler=_cmd_init)

    p = sub.add_parser("serve", help="start the web server (chat API, widget, console)")
    p.add_argument("--host", help="bind address (default: HYBRIDESK_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: HYBRIDESK_PORT, 8000)")
    p.add_argument("--init", action="store_true", help="run `init` first if the database is empty")
    p.set_defaults(handler=_cmd_serve)

    p = sub.add_parser("chat", help="talk to the bot in the terminal")
    p.add_argument("--sender", default="terminal", help="conversation sender id (kept across runs)")
    p.add_argument("-m", "--message", help="send one message, print the reply and exit")
    p.set_defaults(handler=_cmd_chat)

    p = sub.add_parser("db", help="database migrations")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION")
    dbsub.required = True
    up = dbsub.add_parser("upgrade", help="migrate to the newest schema")
    up.add_argument("revision", nargs="?", default="head")
    up.add_argument("--url", help="database URL (default: HYBRIDESK_DATABASE_URL or the SQLite file)")
    up.set_defaults(handler=_cmd_db_upgrade)
    down = dbsub.add_parser("downgrade", help="migrate back (default: to an empty database)")
    down.add_argument("revision", nargs="?", default="base")
    down.add_argument("--url")
    down.set_defaults(handler=_cmd_db_downgrade)

    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx = CliContext(args)
    handler: Any = args.handler
    try:
        return int(handler(args, ctx) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HybrideskError as exc:
        print(f"hybridesk: error [{exc.code}]: {exc.message}", file=sys.stderr)
        if isinstance(exc, ConfigurationError):
            return 2
        if isinstance(exc, Unavailable):
            return 3
        return 1
    except Exception as exc:  # pydantic validation of settings and friends
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            print(f"hybridesk: error [configuration]: invalid setting: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
