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

from knowledge.errors import ConfigurationError, Conflict, HybrideskError, InvalidInput, Unavailable

log = logging.getLogger("hybridesk")

# Optional subcommand groups, each owned by the package that implements it.
COMMAND_GROUPS = ["bot.cli_kb", "bot.cli_nlu", "bot.cli_models", "bot.cli_corrections", "bot.cli_users"]


class CliContext:
    """Lazily built dependencies for command handlers (nothing heavy is loaded for `--help`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._database_checked = False

    @cached_property
    def settings(self):
        from bot.settings import get_settings

        settings = get_settings()
        check_data_dir(settings.data_dir)
        return settings

    @cached_property
    def services(self):
        from bot.services import Services

        return Services(self.settings)

    @property
    def db(self):
        self.require_database()
        return self.services.db

    def session(self):
        """A unit of work (commits on success) for handlers that need the database."""
        self.require_database()
        return self.services.db.unit_of_work()

    def knowledge(self):
        self.require_database()
        return self.services.knowledge

    def require_database(self) -> None:
        """A clear error, instead of a traceback about a missing table, when the database was never
        migrated; a SQLite file that does not exist is not created by asking."""
        if self._database_checked:
            return
        url = self.settings.resolved_database_url
        if not database_file_present(url):
            raise_not_initialised(url)
        from bot.db.engine import check_connection

        engine = self.services.db.engine
        check_connection(engine)
        from bot.db.migrate import require_current_schema

        # never migrated: not initialised; an older schema would fail later, mid-command (`db upgrade` first)
        require_current_schema(engine)
        self._database_checked = True


def check_data_dir(data_dir: Any) -> None:
    """HYBRIDESK_DATA_DIR must be a folder (or not exist yet): a file there fails every command oddly."""
    from pathlib import Path

    path = Path(data_dir)
    if path.exists() and not path.is_dir():
        raise ConfigurationError(
            f"HYBRIDESK_DATA_DIR={path} is a file, not a folder; point it at a folder (it is created if missing).",
            code="bad_data_dir",
        )


def database_file_present(url: str) -> bool:
    """False for a SQLite URL whose file is missing or empty (a never-initialised data dir); True otherwise."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return True  # make_engine names the problem
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return True
    path = Path(parsed.database).expanduser()
    return path.is_file() and path.stat().st_size > 0


def raise_not_initialised(url: str) -> None:
    from bot.db.migrate import not_initialised

    raise not_initialised(_redact(url))


def _cmd_db_upgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.db.migrate import current, upgrade

    url = args.url or ctx.settings.resolved_database_url
    with _alembic_errors():
        upgrade(url, args.revision)
    print(f"database at {_redact(url)} is at revision {current(url)}")
    return 0


def _cmd_db_downgrade(args: argparse.Namespace, ctx: CliContext) -> int:
    from bot.db.migrate import current, downgrade

    url = args.url or ctx.settings.resolved_database_url
    if not database_file_present(url):
        raise_not_initialised(url)  # nothing to go back from (and no empty file left behind by asking)
    _check_reachable(url)
    if not args.revision:
        previous = _previous_revision(url)
        example = f", e.g. `hybridesk db downgrade {previous}`" if previous else ""
        raise InvalidInput(
            f"Name the revision to go back to (the database is at {_revision_label(url)}; revisions: "
            f"{', '.join(_known_revisions())}){example}. `hybridesk db downgrade base --yes` drops every table "
            "and all their data.",
            code="revision_required",
        )
    if _reaches_base(url, args.revision) and not args.yes:
        raise InvalidInput(
            f"Downgrading to {args.revision!r} drops every table of the database at {_redact(url)} (users, "
            "conversations, knowledge base, tickets), with all their data. Add --yes if that is what you want.",
            code="confirmation_required",
        )
    with _alembic_errors():
        downgrade(url, args.revision)
    print(f"database at {_redact(url)} is at revision {current(url) or 'base (empty)'}")
    return 0


def _cmd_db_current(args: argparse.Namespace, ctx: CliContext) -> int:
    url = args.url or ctx.settings.resolved_database_url
    if not database_file_present(url):
        raise_not_initialised(url)
    _check_reachable(url)
    now = _current(url)
    known = _known_revisions()
    state = "" if now is None else " (newest)" if known and now == known[-1] else (
        f" (newer: {', '.join(known[known.index(now) + 1:])}; run `hybridesk db upgrade`)" if now in known else
        " (unknown to this version of hybridesk)")
    print(f"database at {_redact(url)} is at revision {now or 'base (empty)'}{state}")
    return 0


def _check_reachable(url: str) -> None:
    from bot.db.engine import check_connection, make_engine

    engine = make_engine(url)
    try:
        check_connection(engine)
    finally:
        engine.dispose()


def _known_revisions() -> list[str]:
    """Revision ids, oldest first."""
    from bot.db.migrate import known_revisions

    return known_revisions()


def _current(url: str) -> str | None:
    from bot.db.migrate import current

    return current(url)


def _revision_label(url: str) -> str:
    return f"revision {_current(url) or 'base (empty)'}"


def _previous_revision(url: str) -> str | None:
    """The revision before the database's current one (None at the first revision or at base)."""
    known = _known_revisions()
    now = _current(url)
    if now in known and known.index(now) > 0:
        return known[known.index(now) - 1]
    return None


def _reaches_base(url: str, revision: str) -> bool:
    """Whether downgrading to ``revision`` ("base", or "-N" at least as far back as the first revision)
    leaves no schema at all."""
    if revision == "base":
        return True
    if revision.startswith("-") and revision[1:].isdigit():
        now = _current(url)
        known = _known_revisions()
        applied = known.index(now) + 1 if now in known else 0
        return int(revision[1:]) >= applied
    return False


class _alembic_errors:
    """Alembic's CommandError (an unknown or unreachable revision) as one clear line."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        from alembic.script.revision import RevisionError
        from alembic.util.exc import CommandError
        from sqlalchemy.exc import IntegrityError

        if exc is not None and isinstance(exc, CommandError | RevisionError):
            raise InvalidInput(f"{exc} (revisions: {', '.join(_known_revisions())}, head, base).",
                               code="bad_revision") from exc
        if exc is not None and isinstance(exc, IntegrityError):
            # e.g. back to 0001 while a sender has several conversations (0001 allowed one per sender)
            first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
            raise Conflict(f"The data in the database does not fit the older schema ({first}); nothing was changed "
                           "where the database rolls back a failed migration (PostgreSQL). See the migration's "
                           "notes in alembic/versions/.", code="downgrade_refused") from exc
        return False


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

    ctx.require_database()
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
    cur = dbsub.add_parser("current", help="the database's schema revision (changes nothing)")
    cur.add_argument("--url", help="database URL (default: HYBRIDESK_DATABASE_URL or the SQLite file)")
    cur.set_defaults(handler=_cmd_db_current)
    down = dbsub.add_parser("downgrade", help="migrate back to REVISION (`base`, with --yes, drops every table)")
    down.add_argument("revision", nargs="?", help="a revision id, -N (steps back), or base (an empty database)")
    down.add_argument("--yes", action="store_true", help="confirm a downgrade that drops every table (base)")
    down.add_argument("--url", help="database URL (default: HYBRIDESK_DATABASE_URL or the SQLite file)")
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
        code = int(handler(args, ctx) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's own flush at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HybrideskError as exc:
        return _error(exc.code, exc.message, 2 if isinstance(exc, ConfigurationError)
                      else 3 if isinstance(exc, Unavailable) else 1)
    except BrokenPipeError as exc:
        if _stdout_closed():  # `hybridesk kb facts | head`: the reader has what it wanted
            _silence_stdout()
            return 141  # as a shell reports a process ended by SIGPIPE
        return _error("broken_pipe", str(exc), 1)
    except Exception as exc:  # pydantic validation of settings, a table missing, the OS
        from pydantic import ValidationError
        from sqlalchemy.exc import OperationalError, ProgrammingError

        if isinstance(exc, ValidationError):
            return _error("configuration", f"invalid setting: {exc}", 2)
        if isinstance(exc, OperationalError | ProgrammingError) and _missing_table(exc):
            log.debug("database error", exc_info=True)
            return _error("database_not_initialised",
                          f"the database has no table the command needs ({_first_line(exc.orig)}); run "
                          "`hybridesk db upgrade` (or `hybridesk init` on a new data dir).", 2)
        if isinstance(exc, OSError):
            log.debug("OS error", exc_info=True)
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            return _error("os_error", f"{exc.strerror or exc}{where}", 1)
        raise


def _error(code: str, message: str, status: int) -> int:
    print(f"hybridesk: error [{code}]: {message}", file=sys.stderr)
    return status


def _first_line(value: Any) -> str:
    return (str(value).strip().splitlines() or [""])[0]


def _missing_table(exc: Exception) -> bool:
    """SQLite's "no such table", PostgreSQL's undefined table ("relation ... does not exist")."""
    text = _first_line(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


def _stdout_closed() -> bool:
    """Whether the reader of our standard output went away (a pipe whose other end is closed)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # no real descriptor to ask (a test's capture): the pipe error was ours


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's flush at exit does not fail on the pipe again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
