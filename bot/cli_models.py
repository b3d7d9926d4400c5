"""`hybridesk train | adapters | eval | tickets import`: the fine-tuning commands.

Handlers take ``(args, ctx)``; ``ctx.settings`` gives the paths (data_dir, shared_data_dir,
base_model_dir, adapters_dir, user_adapters_dir) and ``ctx.session()`` a unit of work. Errors are
``HybrideskError`` subclasses, turned into one line by ``bot.cli.main``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bot.cli_kb import positive_int
from knowledge.errors import HybrideskError, InvalidInput
from models.config import TrainConfig
from models.prompting import MAX_NEW_TOKENS
from models.tickets import FIELDS as TICKET_FIELDS

REPO_ROOT = Path(__file__).resolve().parents[1]
#: below this many held-out examples, `train` says its validation loss cannot rank adapters
FEW_HELD_OUT = 20
DEFAULT_CONFIG = REPO_ROOT / "models" / "configs" / "default.yaml"
log = logging.getLogger(__name__)


def _registry(ctx: Any) -> Any:
    from models.adapters import SHIPPED_ROOT, AdapterRegistry

    settings = ctx.settings
    shipped = getattr(settings, "adapters_dir", None) or SHIPPED_ROOT
    user = getattr(settings, "user_adapters_dir", None) or Path(settings.data_dir) / "adapters"
    return AdapterRegistry(user, shipped)


def _tone_fn(ctx: Any) -> Any:
    """:func:`tone_detector` of the command's services (None when they cannot be built)."""
    try:
        services = ctx.services
    except Exception:  # noqa: BLE001 - NLU is optional for importing and training
        return None
    return tone_detector(services)


class _Labeller:
    """The bot's tone and intent of each ticket message, from one NLU reading per message, its model
    loaded at the first use (a file that cannot be read is refused before the model loads: CLI QA B13,
    12 s of loading, then "file not found"). A ticket imported without an intent is labelled with the one
    the bot would detect: the bot names an intent in every prompt (operator QA: a company's export has
    categories, not the bot's intent names).

    Nothing is swallowed silently: :attr:`problem` says why tickets got no labels (no NLU model active,
    a model that cannot be loaded, readings that failed), for the import summary, and a model that
    cannot be loaded or a failed reading is logged (by its error type: never the message's text)."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.predict: Any = None
        self.loaded = False
        self.unavailable: str | None = None  # why there is no model to read with
        self.failures = 0
        self.first_failure: str | None = None
        self.last: tuple[str | None, Any] = (None, None)

    def _read(self, text: str) -> Any:
        if not self.loaded:
            self.loaded = True
            self.predict, self.unavailable = _load_nlu(lambda: self.ctx.services)
        if self.predict is None:
            return None
        if self.last[0] != text:  # (tone and intent of one message: one reading)
            try:
                result = self.predict(text)
            except Exception as exc:  # noqa: BLE001 - one unreadable message must not stop the import
                self.failures += 1
                if self.first_failure is None:
                    self.first_failure = type(exc).__name__
                    log.warning("the NLU model could not read a ticket's message (%s); it is imported without "
                                "the detected intent and tone", type(exc).__name__, exc_info=log.isEnabledFor(
                                    logging.DEBUG))
                result = None
            self.last = (text, result)
        return self.last[1]

    def tone(self, text: str) -> str | None:
        return None if (result := self._read(text)) is None else result.tone.label

    def intent(self, text: str) -> str | None:
        return None if (result := self._read(text)) is None else result.intent

    @property
    def problem(self) -> str | None:
        if self.unavailable:
            return self.unavailable
        if self.failures:
            return (f"the NLU model could not read {self.failures} message(s) ({self.first_failure}; see the log); "
                    "import the file again to retry them")
        return None


_NO_MODEL = ("no NLU model is active: run `hybridesk nlu train` (or `hybridesk init`), then import the file again "
             "to label them")


def _load_nlu(services: Any) -> tuple[Any, str | None]:
    """``(the active NLU model's predict, None)``, or ``(None, why not)``; a model that exists but cannot be
    loaded is logged as a warning, not hidden. ``services``: the bot's services, or a function giving them
    (building them may fail too)."""
    try:
        registry = (services() if callable(services) else services).nlu
        if not registry.has_active():
            return None, _NO_MODEL
        model = registry.current()
    except Exception as exc:  # noqa: BLE001 - NLU is optional for importing and training
        message = exc.message if isinstance(exc, HybrideskError) else f"{type(exc).__name__}: {exc}"
        log.warning("the NLU model cannot be loaded, so tickets get no detected intent or tone: %s", message)
        return None, (f"the NLU model cannot be loaded ({message}); fix or retrain it (`hybridesk nlu train`), then "
                      "import the file again to label them")
    predict = getattr(model, "predict", None)
    return (predict, None) if callable(predict) else (None, "the active NLU model cannot read messages")


def kb_context_fn(services: Any) -> Any:
    """``text -> (passages, facts)``: what the bot's answer step retrieves for a message now."""
    from bot.conversation.responder import Responder

    responder = Responder(services.knowledge, None, company_name=services.settings.company_name)
    return lambda text: responder.retrieve(text, [])


def _nlu_predict(services: Any) -> Any:
    """The active NLU model's ``predict`` (``text -> NLUResult``), or None when there is none (a model that
    cannot be loaded is logged)."""
    return _load_nlu(services)[0]


def tone_detector(services: Any) -> Any:
    """The bot's tone detector (``text -> label``), when an NLU model is active; else None.

    Training, evaluation and ticket import label tickets that carry no tone with it, so that
    their prompts match what the bot sends at answer time.
    """
    predict = _nlu_predict(services)
    if predict is None:
        return None

    def tone(text: str) -> str:
        return predict(text).tone.label

    return tone


# -- train -----------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, ctx: Any) -> int:
    from models.config import TrainConfig, resolve_company_name
    from models.training import (
        TrainingInterrupted,
        TrainingTerminated,
        resolve_output_root,
        sigterm_as_interrupt,
        train,
    )

    cfg = TrainConfig.from_yaml(args.config, args.set)
    settings = ctx.settings
    if args.clean_runs or args.list_runs:
        return _runs(cfg, ctx, delete=args.clean_runs)
    _check_target_modules(cfg, settings)  # (was said after the base model loaded and the tickets were tokenised)
    company, origin = resolve_company_name(cfg.company_name, args.set, getattr(settings, "company_name", None))
    cfg = dataclasses.replace(cfg, company_name=company)
    fields_set = getattr(settings, "model_fields_set", None)
    if origin == "HYBRIDESK_COMPANY_NAME" and fields_set is not None and "company_name" not in fields_set:
        origin = "the default: set HYBRIDESK_COMPANY_NAME to name yours"
    print(f"prompts name the company {company!r} (from {origin}; change it with --set company_name=NAME)",
          file=sys.stderr)
    output_root = resolve_output_root(cfg, Path(settings.data_dir))
    known_roots = [p.resolve() for p in _registry(ctx).root_paths()]
    outside = output_root.resolve() not in known_roots
    if args.activate and outside:
        raise InvalidInput(
            f"--activate cannot be used with output_root={cfg.output_root}: the bot only knows the adapters in "
            f"{_registry(ctx).user_root} (and the shipped ones), so it could not activate an adapter saved in "
            f"{output_root}. Leave output_root out, or train without --activate and copy the adapter there.",
            code="bad_config",
        )
    _check_train_targets(cfg, ctx)  # before any model loads: a taken id or a damaged parent fails in a second
    if cfg.use_db_tickets or cfg.kb_context > 0:
        _require_database(ctx)
    if cfg.use_db_tickets and not (cfg.sample_tickets or cfg.bitext_csv):
        _require_imported_tickets(ctx)  # before the tone detector and the base model load
    session_cm = ctx.session() if cfg.use_db_tickets else None
    command = "hybridesk train --config " + str(args.config) + "".join(f" --set {s}" for s in args.set or [])
    try:
        # SIGTERM (`kill`, a service manager) stops the run as Ctrl+C does, with the same resume hint: its
        # default action ended the process without a word, the checkpoint kept but unmentioned (QA)
        with sigterm_as_interrupt():
            if session_cm is not None:
                with session_cm as session:
                    result = _run_train(cfg, settings, session, ctx, args, command, train)
            else:
                result = _run_train(cfg, settings, None, ctx, args, command, train)
    except TrainingInterrupted as exc:
        print(exc.message, file=sys.stderr)
        if exc.signal_name:
            return 128 + _signal_number(exc.signal_name)  # as a shell reports a process ended by that signal
        raise  # `hybridesk` prints "interrupted" and exits with 130
    except TrainingTerminated as exc:  # outside the steps: loading and tokenising, or saving the adapter
        print(f"training stopped by {exc.signal_name} outside its training steps (while loading, or while saving "
              "the adapter); a checkpoint a run kept is still there: run the same command again to start or "
              "resume (`hybridesk train --list-runs` lists the checkpoints)", file=sys.stderr)
        return 128 + _signal_number(exc.signal_name)
    m = result.metrics
    print(f"adapter {result.adapter_id} saved to {result.adapter_dir}")
    print(
        f"steps {m['steps']}/{m['total_steps']}, val loss {_fmt(m['val_loss'])} "
        f"(base {_fmt(m['base_val_loss'])}), {m['tokens_per_s']:.0f} tokens/s, {m['wall_seconds']:.0f} s"
    )
    held_out = m.get("examples_val")
    if isinstance(held_out, int) and held_out < FEW_HELD_OUT:
        # (operator QA: 12 tickets x val_fraction 0.05 held out one, and its loss read like a verdict)
        print(f"note: the val loss is over {held_out} held-out example{'s' if held_out != 1 else ''} only: "
              "too few to compare adapters by; import more tickets or raise val_fraction")
    if args.activate:
        _registry(ctx).activate(result.adapter_id)
        print(f"adapter {result.adapter_id} is now active")
    elif outside:
        user_root = _registry(ctx).user_root
        print(f"the bot does not see adapters in {output_root}: to use this one, copy it into {user_root} "
              f"(cp -r {result.adapter_dir} {user_root}/) and run `hybridesk adapters activate {result.adapter_id}`")
    else:
        print(f"activate it with: hybridesk adapters activate {result.adapter_id}")
    return 0


def _signal_number(name: str) -> int:
    import signal

    try:
        return int(signal.Signals[name])
    except KeyError:
        return int(signal.SIGTERM)


def _serving_backend(settings: Any) -> str | None:
    """The generation backend the bot answers with (``llamacpp``, ``transformers``, ``openai``), or None when the
    settings do not say."""
    try:
        from bot.settings import resolved_generator

        return resolved_generator(settings)
    except Exception:  # noqa: BLE001 - settings without a generator (a bare context): nothing to check against
        return None


def _check_target_modules(cfg: Any, settings: Any) -> None:
    """``target_modules`` checked against the base model family's layers before anything loads; a layer training
    can adapt but llama.cpp cannot serve (``lm_head``) is refused when llama.cpp answers customers, and noted
    otherwise. An ``init_adapter``'s own targets win (the key is then ignored)."""
    from models.config import base_model_type, check_target_names, llamacpp_refusal

    if cfg.init_adapter:
        return
    base_dir = getattr(settings, "base_model_dir", None) or cfg.base_model_dir
    unservable = check_target_names(cfg.target_modules, base_model_type(base_dir))
    if not unservable:
        return
    backend = _serving_backend(settings)
    if backend == "llamacpp":
        raise InvalidInput("Invalid training config: " + llamacpp_refusal(unservable), code="bad_config")
    print(f"note: {llamacpp_refusal(unservable)} (this install answers with {backend or 'another backend'}.)",
          file=sys.stderr)


def _runs(cfg: Any, ctx: Any, *, delete: bool) -> int:
    """`train --list-runs` / `--clean-runs`: the checkpoints of unfinished runs, with their sizes."""
    import shutil

    from models.training import list_runs, resolve_output_root

    runs = list_runs(resolve_output_root(cfg, Path(ctx.settings.data_dir)))
    if not runs:
        print("no unfinished runs (no checkpoints left behind)")
        return 0
    total = 0
    for path, step, size in runs:
        total += size
        where = f"step {step}" if step is not None else "no readable checkpoint"
        if delete:
            shutil.rmtree(path, ignore_errors=True)
        print(f"{'deleted ' if delete else ''}{path}  {where}  {size / 1e6:.1f} MB")
    with contextlib.suppress(OSError):
        if delete:
            runs[0][0].parent.rmdir()
    verb = "freed" if delete else "in total; `hybridesk train --clean-runs` deletes them"
    print(f"{len(runs)} run(s), {total / 1e6:.1f} MB {verb}")
    return 0


def _require_imported_tickets(ctx: Any) -> None:
    from sqlalchemy import func, select

    from models.db import ImportedTicket

    with ctx.session() as session:
        if not session.scalar(select(func.count()).select_from(ImportedTicket)):
            raise InvalidInput(
                "No tickets imported yet: run `hybridesk tickets import FILE` first (use_db_tickets=true with "
                "bitext_csv=null and sample_tickets=null trains only on the tickets imported into the database).",
                code="no_data",
            )


def _require_database(ctx: Any) -> None:
    """The CLI context's "database not initialised" check, before minutes of model loading."""
    check = getattr(ctx, "require_database", None)
    if callable(check):
        check()


def _check_train_targets(cfg: Any, ctx: Any) -> None:
    """Refuse a ``version`` that an adapter (user or shipped) already has, and a damaged ``init_adapter``."""
    from models.adapters import AdapterRegistry, adapter_problem
    from models.training import resolve_output_root

    registry = _registry(ctx)
    if cfg.output_root:  # the config writes somewhere else: that root counts too
        registry = AdapterRegistry(resolve_output_root(cfg, Path(ctx.settings.data_dir)), registry.shipped_root)
    if cfg.version:
        registry.check_new_id(cfg.version)
        if cfg.output_root:
            _registry(ctx).check_new_id(cfg.version)  # nor shadow or copy one the bot knows
    if cfg.init_adapter:
        path = Path(cfg.init_adapter)
        folder = path if (path / "adapter_config.json").is_file() else None
        if folder is None:
            try:
                folder = registry.get(cfg.init_adapter).path
            except HybrideskError:
                return  # training names what is wrong (unknown id, bad id) with the known ones
        problem = adapter_problem(folder)
        if problem is not None:
            raise InvalidInput(f"init_adapter {cfg.init_adapter!r} cannot be used: {problem}.", code="broken_adapter")


def _run_train(cfg, settings, session, ctx, args, command, train):
    if args.no_progress:
        # "log lines instead" of the bar: the training loop's step and validation lines are INFO, below
        # the CLI's WARNING default (CLI QA C1: a --no-progress run was silent until it ended)
        import logging

        logging.getLogger("models.training").setLevel(logging.INFO)  # (its records reach the root's handler)
    return train(
        cfg,
        data_dir=Path(settings.data_dir),
        shared_data_dir=Path(settings.shared_data_dir),
        base_model_dir=getattr(settings, "base_model_dir", None),
        shipped_root=_registry(ctx).shipped_root,
        session=session,
        tone_fn=_tone_fn(ctx),
        context_fn=kb_context_fn(ctx.services) if cfg.kb_context > 0 else None,
        progress=not args.no_progress,
        command=command,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# -- adapters --------------------------------------------------------------------------------


def _cmd_adapters_list(args: argparse.Namespace, ctx: Any) -> int:
    registry = _registry(ctx)
    adapters = registry.list()
    stray = registry.stray_folders()
    shipped = registry.shipped_root
    stray_note = "not an adapter: adapter_config.json is missing (damaged or half copied)"
    if args.json:
        rows = [a.to_dict() for a in adapters]
        rows += [{"id": path.name, "path": str(path), "root": kind, "active": False, "metadata": {},
                  "problem": stray_note} for kind, path in stray]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not adapters and not stray:
        print("no adapters; train one with `hybridesk train --config models/configs/default.yaml`")
        return 0
    for marker, name in registry.missing_active():
        print(f"! {marker} names {name}, which is missing; using {registry.active_id() or 'no adapter (the base model)'}")
    print(f"{'':2}{'id':28} {'root':8} {'created':20} {'val loss':>8}  base")
    for a in adapters:
        metrics = a.metadata.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        problem = a.problem
        print(
            f"{'*' if a.active else ' ':2}{a.id:28} {a.root:8} {str(a.metadata.get('created_at', '-'))[:19]:20} "
            f"{_fmt(metrics.get('val_loss')):>8}  {a.metadata.get('base_model', '-')}"
            + ("  DAMAGED" if problem else "")
        )
        notes = [problem, a.metadata.get("error")]
        if a.root == "user" and shipped is not None and (shipped / a.id).is_dir():
            notes.append("shadows the shipped adapter of the same id, which the bot no longer sees")
        for note in notes:
            if note:
                print(f"{'':30}! {note}")
    for kind, path in stray:
        print(f"{'':2}{path.name:28} {kind:8} {'-':20} {'-':>8}  -  DAMAGED")
        print(f"{'':30}! {stray_note}")
    return 0


def _cmd_adapters_show(args: argparse.Namespace, ctx: Any) -> int:
    info = _registry(ctx).get(args.id)
    print(json.dumps(info.to_dict(), indent=2, default=str))
    return 0


def _cmd_adapters_activate(args: argparse.Namespace, ctx: Any) -> int:
    registry = _registry(ctx)
    target = None if args.id == "none" else args.id
    registry.activate(target)
    print(f"active adapter: {target or 'none (base model)'}")
    return 0


# -- eval ------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace, ctx: Any) -> int:
    from models.evaluation import EvalOptions, evaluate, format_table, trained_company_name

    settings = ctx.settings
    registry = _registry(ctx)
    adapter_id = args.adapter or registry.active_id()
    if adapter_id is None:
        raise InvalidInput("No adapter to evaluate: pass --adapter ID or activate one.", code="no_adapter")
    info = registry.get(adapter_id)
    problem = info.problem
    if problem is not None:  # found now, not as a traceback after the base model has loaded
        raise InvalidInput(f"Adapter {adapter_id!r} cannot be evaluated: {problem}.", code="broken_adapter")
    others = [registry.get(other).path for other in args.same_tickets_as]
    # where the report goes is checked before minutes of generation, not after
    out = Path(args.output) if args.output else Path(settings.data_dir) / "eval" / f"{adapter_id}.json"
    if out.is_dir():
        raise InvalidInput(f"--output {out} is a directory; name a JSON file.", code="bad_output")
    # an adapter trained on imported tickets is scored on those it held out: they are in the database
    uses_db = any(_trained_on_db(m) for m in [info.metadata, *(registry.get(o).metadata for o in args.same_tickets_as)])
    if args.kb_context or uses_db:
        _require_database(ctx)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"Cannot write the report to {out} ({exc.strerror}).", code="bad_output") from exc
    options = EvalOptions(
        limit=args.limit,
        max_new_tokens=args.max_new_tokens,
        compare_base=not args.no_base,
        seed=args.seed,
        resolvable_slots=_kb_slots(ctx),
        # the prompts name the company the adapter was trained for (else the product setting)
        company_name=trained_company_name(info.metadata) or getattr(settings, "company_name", None),
    )
    with (ctx.session() if uses_db else contextlib.nullcontext()) as session:
        report = evaluate(
            info.path,
            data_dir=Path(settings.data_dir),
            shared_data_dir=Path(settings.shared_data_dir),
            base_model_dir=getattr(settings, "base_model_dir", None),
            options=options,
            tone_fn=_tone_fn(ctx),
            context_fn=kb_context_fn(ctx.services) if args.kb_context else None,
            same_tickets_as=others,
            session=session,
        )
    out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    print(format_table(report))
    print(f"report written to {out}")
    return 0


def _trained_on_db(metadata: dict) -> bool:
    config = metadata.get("config")
    return isinstance(config, dict) and bool(config.get("use_db_tickets"))


def _kb_slots(ctx: Any) -> list[str] | None:
    """Every slot name the knowledge base fills now (None when no KB can be read).

    The guardrails fill a ``{{Slot}}`` through ``KnowledgeService.resolve_placeholder``: a fact in force
    whose placeholder alias or name matches, case-, space- and ``_``/``-``-insensitively. These are those
    aliases and names (the evaluation compares them the same way).
    """
    from models.prompting import slot_name_for

    try:
        facts = ctx.knowledge().facts()
    except Exception as exc:  # noqa: BLE001 - the share of resolvable slots is then not reported
        message = exc.message if isinstance(exc, HybrideskError) else f"{type(exc).__name__}: {exc}"
        log.warning("'slots the KB resolves' is not reported: cannot read the knowledge base (%s)", message)
        log.debug("knowledge base error", exc_info=True)
        return None
    names: set[str] = set()
    for fact in facts.values():
        names.update(p for p in fact.placeholders if p)
        names.update((fact.name, slot_name_for(fact.name)))
    return sorted(names)


# -- tickets import --------------------------------------------------------------------------


def _cmd_tickets_import(args: argparse.Namespace, ctx: Any) -> int:
    from models.tickets import import_tickets

    mapping: dict[str, str] = {}
    for item in args.map or []:
        column, sep, fld = item.partition("=")
        if not sep or not column or not fld:
            raise InvalidInput(f"--map {item!r} must look like COLUMN=FIELD.", code="bad_mapping")
        if mapping.get(column, fld) != fld:
            # (the later one silently replaced the earlier)
            raise InvalidInput(f"--map maps column {column!r} twice ({column}={mapping[column]} and {item}); a column "
                               "fills one field. Nothing was imported.", code="bad_mapping")
        mapping[column] = fld
    fmt = args.format or _guess_format(Path(args.path))
    with ctx.session() as session:
        labeller = _Labeller(ctx)
        report = import_tickets(session, args.path, fmt, mapping or None, tone_fn=labeller.tone,
                                intent_fn=labeller.intent, company=lambda: company_contacts_of(ctx))
        report.label_problem = labeller.problem
        session.commit()
    print(report.summary())
    done = report.imported or report.duplicates or report.relabelled or report.labelled_later
    return 0 if done or not report.errors else 1


def company_contacts_of(ctx: Any) -> list[tuple[str, str]]:
    """The company's phone numbers and e-mail addresses from its KB (``(value, "{{Slot}}")``): an agent's reply
    that gives them is scrubbed to the KB's slots, not to the customer's (none when no KB can be read)."""
    try:
        contacts = ctx.services.company_contacts
    except Exception:  # noqa: BLE001 - no services (a bare context): the cue words of a reply still count
        return []
    return list(contacts())


def _check_source(session: Any, source: str | None) -> None:
    """Refuse a ``--source`` no ticket can have (a typo: "csvv"), naming the sources there are."""
    from models.tickets import FORMATS, stored_sources

    if source is None:
        return
    counts = stored_sources(session)
    if source in counts or source in FORMATS:
        return
    held = ", ".join(f"{name} ({n})" for name, n in counts.items()) or "none yet"
    raise InvalidInput(f"Unknown source {source!r}: a ticket's source is the format it was imported as "
                       f"({', '.join(FORMATS)}). Sources with imported tickets: {held}.", code="unknown_source")


def _cmd_tickets_list(args: argparse.Namespace, ctx: Any) -> int:
    from models.tickets import find_imported, shorten

    with ctx.session() as session:
        _check_source(session, args.source)
        rows, total = find_imported(session, source=args.source, search=args.search, limit=args.limit)
        for row in rows:
            print(_shown(f"{row.id:>6}  {row.source:11} {shorten(row.intent or '-', 24):24} "
                         f"{shorten(row.customer_message)}"))
    what = " matching" if args.source or args.search else ""
    # (on stdout, after the lines it counts: on stderr it came out of order when piped)
    if not total:
        print(f"no{what} imported tickets")
    elif len(rows) < total:
        print(f"{len(rows)} of {total}{what} tickets shown (--limit N shows more)")
    else:
        print(f"{total}{what} ticket(s)")
    return 0


def _cmd_tickets_show(args: argparse.Namespace, ctx: Any) -> int:
    from models.tickets import get_imported

    with ctx.session() as session:
        for row in get_imported(session, args.ids):
            print(f"id:          {row.id}")
            print(f"source:      {row.source}")
            for label, value in (("external id", row.external_id), ("intent", row.intent),
                                 ("category", row.category), ("tone", row.tone),
                                 ("created at", row.created_at), ("imported at", row.imported_at)):
                print(_shown(f"{label + ':':13}{value if value is not None else '-'}"))
            print(f"data hash:   {row.data_hash}")
            print("customer message:\n  " + _shown(row.customer_message).replace("\n", "\n  "))
            print("agent reply:\n  " + _shown(row.agent_reply).replace("\n", "\n  "))
            print()
    return 0


def _cmd_tickets_delete(args: argparse.Namespace, ctx: Any) -> int:
    from models.tickets import delete_imported, find_imported

    if not args.ids and not args.source:
        raise InvalidInput("Name the tickets to delete: their ids (`hybridesk tickets list` shows them), or "
                           "--source SOURCE --yes to delete every ticket imported as SOURCE.", code="bad_arguments")
    if args.ids and args.source:
        raise InvalidInput("Give ticket ids or --source SOURCE, not both.", code="bad_arguments")
    from models.tickets import stored_sources

    with ctx.session() as session:
        _check_source(session, args.source)
        if args.source:
            _, total = find_imported(session, source=args.source, limit=0)
            if not total:
                held = ", ".join(f"{name} ({n})" for name, n in stored_sources(session).items()) or "none"
                print(f"nothing deleted: no ticket was imported as {args.source!r} (sources with imported "
                      f"tickets: {held})")
                return 0
        if args.source and not args.yes:
            raise InvalidInput(f"This would delete all {total} imported ticket(s) of source {args.source!r}; "
                               "add --yes to do it.", code="confirm")
        deleted = delete_imported(session, ticket_ids=args.ids or None, source=args.source)
        session.commit()
    print(f"deleted {deleted} imported ticket(s); adapters already trained on them keep what they learnt")
    return 0


def _shown(text: str) -> str:
    """``text`` safe for a terminal: control characters (an escape sequence in a ticket imported before
    they were removed at import) shown as ``\\x1b`` rather than acted on."""
    from models.tickets import CONTROL_CHARS

    return CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text.replace("\r", "\\r"))


def _guess_format(path: Path) -> str:
    if path.suffix.lower() == ".csv" and path.is_file():  # else read_tickets says what is wrong
        with path.open(encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline().lower()
        return "bitext" if "instruction" in header and "response" in header else "csv"
    if path.name == "tickets.jsonl":
        return "sample"
    if "correction" in path.name:
        return "corrections"
    return "jsonl"


def tickets_group(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``tickets`` group's subparsers, shared with ``bot.cli_corrections``."""
    parser = sub.choices.get("tickets")
    if parser is None:
        parser = sub.add_parser("tickets", help="past support tickets and agents' corrections")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    group = parser.add_subparsers(dest="tickets_command", metavar="ACTION")
    group.required = True
    return group


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``train``, ``adapters``, ``eval`` and ``tickets import`` to the ``hybridesk`` parser."""
    p = sub.add_parser("train", help="LoRA-fine-tune the base model on past tickets")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML training config (default: %(default)s)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable); the keys are the config file's: "
                        f"{', '.join(f.name for f in dataclasses.fields(TrainConfig))}")
    p.add_argument("--activate", action="store_true", help="activate the adapter when training ends")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")
    p.add_argument("--list-runs", action="store_true",
                   help="list the checkpoints unfinished (interrupted) runs left behind, with their sizes; no training")
    p.add_argument("--clean-runs", action="store_true",
                   help="delete those checkpoints (an interrupted run then starts again from step 0); no training")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser("adapters", help="list, show and activate LoRA adapters")
    asub = p.add_subparsers(dest="adapters_command", metavar="ACTION")
    asub.required = True
    q = asub.add_parser("list", help="every adapter (* marks the active one)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(handler=_cmd_adapters_list)
    q = asub.add_parser("show", help="an adapter's metadata")
    q.add_argument("id")
    q.set_defaults(handler=_cmd_adapters_show)
    q = asub.add_parser(
        "activate", help="answer with this adapter from the next reply on (`none`: base model)"
    )
    q.add_argument("id")
    q.set_defaults(handler=_cmd_adapters_activate)

    p = sub.add_parser("eval", help="compare an adapter with the base model on held-out tickets")
    p.add_argument("--adapter", help="adapter id (default: the active one)")
    p.add_argument("--limit", type=positive_int, default=25, help="held-out tickets to generate replies for")
    p.add_argument("--max-new-tokens", type=positive_int, default=MAX_NEW_TOKENS)
    p.add_argument("--no-base", action="store_true", help="skip the base model comparison")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--kb-context", action="store_true",
                   help="prompts as the bot builds them, with the passages and facts the KB gives each message")
    p.add_argument("--same-tickets-as", action="append", default=[], metavar="ADAPTER",
                   help="only tickets this other adapter did not train on either, to compare the two (repeatable)")
    p.add_argument("--output", help="JSON report path (default: <data_dir>/eval/<adapter>.json)")
    p.set_defaults(handler=_cmd_eval)

    group = tickets_group(sub)
    p = group.add_parser("import", help="import past tickets (PII is scrubbed before storing)")
    p.add_argument("path", help="CSV or JSONL file")
    p.add_argument("--format", choices=["bitext", "csv", "jsonl", "sample", "corrections"],
                   help="the file's format (default: guessed from the file: a .csv is csv, or bitext when its header "
                        "has the public support-ticket columns; a name with 'correction' in it is corrections, "
                        "from export-corrections; anything else is jsonl)")
    p.add_argument("--map", action="append", metavar="COLUMN=FIELD",
                   help="map a column of your file to a ticket field (repeatable); fields: "
                        f"{', '.join(TICKET_FIELDS)}. intent should hold the bot's intent names (without it, "
                        "the bot's NLU model labels each ticket)")
    p.set_defaults(handler=_cmd_tickets_import)
    p = group.add_parser("list", help="imported tickets, one line each: id, source, intent, message")
    p.add_argument("--source", help="only this source (csv, jsonl, bitext, sample, corrections)")
    p.add_argument("--search", metavar="TEXT", help="only tickets whose message or reply contains TEXT")
    p.add_argument("--limit", type=positive_int, default=50, help="show at most N tickets (default 50)")
    p.set_defaults(handler=_cmd_tickets_list)
    p = group.add_parser("show", help="an imported ticket in full, as stored (after PII scrubbing)")
    p.add_argument("ids", nargs="+", type=positive_int, metavar="ID")
    p.set_defaults(handler=_cmd_tickets_show)
    p = group.add_parser("delete", help="delete imported tickets by id, or every ticket of a source")
    p.add_argument("ids", nargs="*", type=positive_int, metavar="ID")
    p.add_argument("--source", help="delete every ticket of this source (needs --yes)")
    p.add_argument("--yes", action="store_true", help="confirm deleting by --source")
    p.set_defaults(handler=_cmd_tickets_delete)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `hybridesk`")
