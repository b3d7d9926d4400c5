"""The KB editor (``/console/kb``, editors and admins) and the public policy pages (``/kb/{id}``).

Editors list, create, edit (Markdown with a live preview rendered by the server, HTML escaped),
schedule, publish and retire documents, read their history and diffs, edit facts, and test a
question against the draft next to the published answer. A save made on top of an old revision
is refused with a conflict naming who changed the document in between.

``/kb/{document_id}`` is public and read-only: the revision in force now (or ``?rev=N``, a
revision that has been in force at some point: the exact one a reply cited), with heading anchors
matching the citations. Drafts, and revisions scheduled for later, are never public.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup
from pydantic import BaseModel, Field

from bot.console import corrections as corrections_service
from bot.console import kb_editor
from bot.console import kb_test as kb_test_service
from bot.console.markdown import render_markdown
from bot.web.deps import MAX_ID, CurrentEditor, ServicesDep
from bot.web.notices import with_notice
from bot.web.routes_console import redirect, render, secure_headers
from knowledge.errors import Conflict, HybrideskError, NotFound
from knowledge.ingest import parse_when
from knowledge.store import PAST_TOLERANCE

router = APIRouter(include_in_schema=False)
DOC_ID = r"^[a-z0-9][a-z0-9_-]{0,119}$"


def _form(document_id: str, title: str, body: str, effective_from: str, effective_until: str, tags: str,
          audience: str, facts: str, change_note: str) -> kb_editor.DocumentForm:
    return kb_editor.DocumentForm(document_id=document_id, title=title, body=body, effective_from=effective_from,
                                  effective_until=effective_until, tags=tags, audience=audience, facts_yaml=facts,
                                  change_note=change_note)


FormStr = Annotated[str, Form(max_length=500)]
FormText = Annotated[str, Form(max_length=500_000)]


def _wants_html(request: Request) -> bool:
    """A browser's form post (its errors are shown on the form); API clients keep the JSON errors."""
    return "text/html" in request.headers.get("accept", "")


def _console_html(html: Any) -> Markup:
    """The policy as the console shows it: its headings one level down, under the page's own ``<h1>``
    (markdown-it escapes raw HTML, so every ``<hN`` in its output is a heading it wrote), and their ids,
    with the links to them, prefixed: a heading "Waiting list" must not take the console's own
    ``#waiting-list`` (security QA: console.js filled it with the queue of waiting customers)."""
    text = re.sub(r"<(/?)h([1-5])(?=[\s>])", lambda m: f"<{m[1]}h{int(m[2]) + 1}", str(html))
    text = re.sub(r'(<h\d id=")|(<a href="#)', lambda m: (m[1] or m[2]) + "policy-", text)
    return Markup(text)  # noqa: S704


def _saved_notice(rev: Any, publish: bool) -> str:
    if not publish:
        return "draft_saved"
    start = getattr(rev, "effective_from", None)
    return "scheduled" if start is not None and start > datetime.now(UTC) else "published"


def _newer(knowledge: Any, source: Any) -> list[tuple[int, str, str]]:
    now = datetime.now(UTC)
    return [(r.number, *kb_editor.revision_badge(r.status, r.effective_from, r.effective_until, now))
            for r in knowledge.history(source.document_id) if r.number > source.number]


def _form_with_errors(request: Request, services: Any, form: kb_editor.DocumentForm, exc: HybrideskError, *,
                      document_id: str | None, base_revision: int | None, from_revision: int | None) -> Response:
    """The edit (or new-document) form again, with what was typed and the error beside its field."""
    doc, newer = None, []
    if document_id is not None:
        try:
            doc = services.knowledge.get(document_id, from_revision)
        except NotFound:
            doc = services.knowledge.get(document_id)
        newer = _newer(services.knowledge, doc)
    field = kb_editor.form_error_field(exc)
    return render(request, "console/kb_edit.html", {
        "form": form, "base_revision": base_revision, "doc": doc, "newer": newer,
        "errors": {field or "form": exc.message}, "first_error": field}, status_code=exc.http_status)


@router.get("/console/kb")
def kb_list(request: Request, user: CurrentEditor, services: ServicesDep) -> Response:
    docs = services.knowledge.list_documents()
    suggestions = corrections_service.kb_suggestions(services.db, company=services.company_contacts())
    return render(request, "console/kb_list.html", {"docs": docs, "suggestions": suggestions})


@router.get("/console/kb/new")
def kb_new(request: Request, user: CurrentEditor) -> Response:
    form = kb_editor.DocumentForm(document_id="", title="", body="# Title\n\n## Section\n\nPolicy text.\n")
    return render(request, "console/kb_edit.html", {"form": form, "base_revision": None, "doc": None, "errors": {}})


@router.post("/console/kb/new")
async def kb_create(request: Request, user: CurrentEditor, services: ServicesDep, document_id: FormStr = "",
                    title: FormStr = "", body: FormText = "", effective_from: FormStr = "",
                    effective_until: FormStr = "", tags: FormStr = "", audience: FormStr = "",
                    facts: FormText = "", change_note: FormStr = "", action: FormStr = "save") -> Response:
    form = _form(document_id, title, body, effective_from, effective_until, tags, audience, facts, change_note)
    try:
        rev = await asyncio.to_thread(kb_editor.save_revision, services.knowledge, form, author=user.email,
                                      base_revision=None, publish=action == "publish")
    except HybrideskError as exc:
        if not _wants_html(request):
            raise
        return _form_with_errors(request, services, form, exc, document_id=None, base_revision=None,
                                 from_revision=None)
    return redirect(with_notice(f"/console/kb/{rev.document_id}", _saved_notice(rev, action == "publish")))


@router.get("/console/kb/{document_id}")
def kb_document(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                rev: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    return _document_page(request, services, document_id, rev)


def _document_page(request: Request, services: Any, document_id: str, rev: int | None, *,
                   errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                   confirm_retire: dict[str, Any] | None = None, status_code: int = 200) -> Response:
    """A document's page; with ``errors`` (keyed "publish_at", "publish", "retire_at", "retire") its forms show
    what went wrong beside the field, keeping ``values``; with ``confirm_retire`` it asks to confirm a
    retirement that takes effect now."""
    knowledge = services.knowledge
    revision = knowledge.get(document_id, rev)
    history = knowledge.history(document_id)
    live = {r.document_id: r.number for r in knowledge.in_force()}.get(document_id)
    now = datetime.now(UTC)
    # what publishing with an empty date does: the draft's own start if it is still to come (a schedule
    # cancelled keeps it), else now
    own_start = revision.effective_from if revision.effective_from and revision.effective_from > now else None
    return render(request, "console/kb_doc.html", {
        "doc": revision, "history": history, "in_force": live, "latest": history[-1].number,
        "html": _console_html(render_markdown(revision.content, revision.title)),
        "mentions": kb_editor.other_mentions(knowledge, revision), "own_start": own_start,
        "errors": errors or {}, "values": values or {}, "confirm_retire": confirm_retire},
        status_code=status_code)


@router.get("/console/kb/{document_id}/edit")
def kb_edit(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
            revision: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    """The form starts from the revision in force (or ``revision``), not from a newer draft or scheduled
    revision, which it names: a typo fixed on top of a scheduled revision would publish it early."""
    knowledge = services.knowledge
    latest = knowledge.get(document_id)
    if revision is None:
        live = next((r.number for r in knowledge.in_force() if r.document_id == document_id), None)
        revision = live or latest.number
    source = latest if revision == latest.number else knowledge.get(document_id, revision)
    now = datetime.now(UTC)
    newer = _newer(knowledge, source)
    until = source.effective_until
    if until is not None and until <= now:
        until = None  # a date already past (a retired revision's) is not offered again: saving would refuse it
    elif source.status == "retired":
        # a retirement still to come is the document's, not an end date of this text: the new revision
        # retires with it (and stays if it is cancelled)
        until = None
    form = kb_editor.DocumentForm(
        document_id=source.document_id, title=source.title, body=source.content,
        effective_from="", effective_until=kb_editor.date_input(until),
        tags=", ".join(source.tags), audience=source.audience or "", facts_yaml=kb_editor.facts_to_yaml(source.facts))
    # (the edit is checked against the latest revision: saved on top of anything newer, it is refused)
    return render(request, "console/kb_edit.html", {"form": form, "base_revision": latest.number, "doc": source,
                                                    "newer": newer, "errors": {}})


@router.post("/console/kb/{document_id}/edit")
async def kb_save(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                  base_revision: Annotated[int, Form(ge=1, le=MAX_ID)], title: FormStr = "", body: FormText = "",
                  effective_from: FormStr = "", effective_until: FormStr = "", tags: FormStr = "",
                  audience: FormStr = "", facts: FormText = "", change_note: FormStr = "",
                  action: FormStr = "save",
                  from_revision: Annotated[int | None, Form(ge=1, le=MAX_ID)] = None) -> Response:
    form = _form(document_id, title, body, effective_from, effective_until, tags, audience, facts, change_note)
    try:
        rev = await asyncio.to_thread(kb_editor.save_revision, services.knowledge, form, author=user.email,
                                      base_revision=base_revision, publish=action == "publish")
    except HybrideskError as exc:
        if not _wants_html(request) or isinstance(exc, NotFound):
            raise
        return _form_with_errors(request, services, form, exc, document_id=document_id,
                                 base_revision=base_revision, from_revision=from_revision)
    return redirect(with_notice(f"/console/kb/{document_id}", _saved_notice(rev, action == "publish")))


@router.post("/console/kb/{document_id}/publish")
async def kb_publish(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                     revision: Annotated[int, Form(ge=1, le=MAX_ID)], base_revision: Annotated[int, Form(ge=1, le=MAX_ID)],
                     at: FormStr = "") -> Response:
    try:
        when = parse_when(at, field_name="publish at") if at.strip() else None
        await asyncio.to_thread(kb_editor.check_not_stale, services.knowledge, document_id, base_revision,
                                publishing=True)
        draft = await asyncio.to_thread(services.knowledge.get, document_id, revision)
        kb_editor.check_facts_stated(draft.content, draft.facts)
        published = await asyncio.to_thread(services.knowledge.publish, document_id, revision, at=when)
    except HybrideskError as exc:
        if not _wants_html(request) or isinstance(exc, NotFound):
            raise
        # a date's problem beside the date field; the text's, or a stale page's, above the form
        field = "publish_at" if exc.code in ("bad_date", "date_in_past", "never_in_force") else "publish"
        return _document_page(request, services, document_id, revision, errors={field: exc.message},
                              values={"publish_at": at}, status_code=exc.http_status)
    return redirect(with_notice(f"/console/kb/{document_id}", _saved_notice(published, True)))


@router.post("/console/kb/{document_id}/unschedule")
async def kb_unschedule(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                        revision: Annotated[int, Form(ge=1, le=MAX_ID)]) -> Response:
    """A scheduled revision goes back to draft; the one in force stays."""
    await asyncio.to_thread(services.knowledge.unschedule, document_id, revision)
    return redirect(with_notice(f"/console/kb/{document_id}?rev={revision}", "schedule_cancelled"))


@router.post("/console/kb/{document_id}/unretire")
async def kb_unretire(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep) -> Response:
    """A retirement that has not taken effect is cancelled; the document stays in force as it was."""
    await asyncio.to_thread(services.knowledge.cancel_retirement, document_id)
    return redirect(with_notice(f"/console/kb/{document_id}", "retirement_cancelled"))


@router.post("/console/kb/{document_id}/retire")
async def kb_retire(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                    at: FormStr = "", note: FormStr = "", confirm: FormStr = "") -> Response:
    """Retire from a later time (it can be cancelled until then), or now: that cannot be undone, so it takes
    a second, deliberate step (``confirm=now``): a form sent without it (Enter pressed in the note field)
    gets a page asking to confirm, naming the document and the time; API clients get a 409."""
    html = _wants_html(request)
    try:
        when = parse_when(at, field_name="retire at") if at.strip() else None
        now = datetime.now(UTC)
        immediate = when is None or now - PAST_TOLERANCE <= when <= now  # (a moment ago is now)
        if immediate and confirm != "now":
            current = next((r for r in services.knowledge.in_force() if r.document_id == document_id), None)
            if current is not None:  # (nothing in force: the store says why below)
                if not html:
                    raise Conflict(
                        f"Retiring {document_id!r} now cannot be undone: customers stop getting answers from it at "
                        "once. Send confirm=now to retire it now, or a later time.", code="confirmation_required")
                return _document_page(request, services, document_id, None, values={"retire_at": at, "note": note},
                                      confirm_retire={"title": current.title, "number": current.number, "when": now})
        await asyncio.to_thread(services.knowledge.retire, document_id, at=when, note=note.strip() or None)
    except HybrideskError as exc:
        if not html or isinstance(exc, NotFound):
            raise
        field = "retire_at" if exc.code in ("bad_date", "date_in_past") else "retire"
        return _document_page(request, services, document_id, None, errors={field: exc.message},
                              values={"retire_at": at, "note": note}, status_code=exc.http_status)
    code = "retired" if immediate else "retirement_scheduled"
    return redirect(with_notice(f"/console/kb/{document_id}", code))


@router.get("/console/kb/{document_id}/diff")
def kb_diff(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
            r1: Annotated[int, Query(ge=1, le=MAX_ID)], r2: Annotated[int, Query(ge=1, le=MAX_ID)]) -> Response:
    diff = services.knowledge.diff(document_id, r1, r2)
    a, b = services.knowledge.get(document_id, r1), services.knowledge.get(document_id, r2)
    facts_a = {f.name: f.value for f in a.facts}
    facts_b = {f.name: f.value for f in b.facts}
    fact_changes = [(n, facts_a.get(n), facts_b.get(n)) for n in sorted(set(facts_a) | set(facts_b))
                    if facts_a.get(n) != facts_b.get(n)]
    return render(request, "console/kb_diff.html", {"document_id": document_id, "r1": r1, "r2": r2,
                                                     "lines": diff.splitlines(), "fact_changes": fact_changes})


@router.get("/console/kb/{document_id}/test")
async def kb_test(request: Request, document_id: str, user: CurrentEditor, services: ServicesDep,
                  q: Annotated[str, Query(max_length=500)] = "",
                  rev: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                  replies: Annotated[bool, Query(description="write both replies before answering (no JS)")] = False
                  ) -> Response:
    """Retrieval on both sides at once; the replies are fetched by the page (or written now with ``replies=1``)."""
    draft = await asyncio.to_thread(services.knowledge.get, document_id, rev)  # 404 for an unknown document
    sides, written = None, {}
    if q.strip():
        sides = await asyncio.to_thread(kb_test_service.retrieval_sides, services, document_id, q, draft.number)
        if replies:
            for side in kb_test_service.SIDES:
                written[side] = await _reply(services, document_id, q, draft.number, side)
    return render(request, "console/kb_test.html", {
        "document_id": document_id, "q": q, "rev": rev or draft.number, "draft": draft, "sides": sides,
        "replies": written, "timeout_s": services.settings.kb_test_timeout_s})


@router.get("/console/kb/{document_id}/test/reply")
async def kb_test_reply(document_id: str, user: CurrentEditor, services: ServicesDep,
                        q: Annotated[str, Query(max_length=500)] = "",
                        rev: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
                        side: Annotated[str, Query(max_length=16)] = "draft") -> JSONResponse:
    """The reply the bot would give on one side (JSON; takes seconds: the model writes it)."""
    kb_test_service.check_side(side)
    kb_test_service.check_question(q)
    reply = await _reply(services, document_id, q, rev, side)
    return JSONResponse(reply.to_dict(), headers={"Cache-Control": "no-store"})


async def _reply(services: Any, document_id: str, q: str, rev: int | None, side: str) -> kb_test_service.Reply:
    timeout_s = services.settings.kb_test_timeout_s
    work = asyncio.to_thread(kb_test_service.bot_reply, services, document_id, q, rev, side, timeout_s=timeout_s)
    try:
        # The responder cuts a slow generation itself; this outer limit catches one that never
        # produces a first token (the thread then finishes on its own and is discarded).
        return await asyncio.wait_for(work, timeout_s * 1.5 + 5)
    except TimeoutError:
        return kb_test_service.too_slow(side, timeout_s)


class PreviewIn(BaseModel):
    text: str = Field("", max_length=500_000)
    title: str = Field("", max_length=300)


@router.post("/console/kb/preview")
def kb_preview(body: PreviewIn, user: CurrentEditor) -> JSONResponse:
    """Live preview: the Markdown rendered exactly as the public page renders it (HTML escaped)."""
    return JSONResponse({"html": str(_console_html(render_markdown(body.text, body.title)))})


# ---------------------------------------------------------------- public policy pages


def _policy_etag(revision: Any, current: Any) -> str:
    """What the public page shows: the revision, its dates and status, and which one is current."""
    parts = [revision.document_id, revision.number, revision.status, revision.effective_from,
             revision.effective_until, revision.published_at, current.number if current is not None else None]
    return '"' + hashlib.sha256(repr(parts).encode()).hexdigest()[:32] + '"'


@router.api_route("/kb/{document_id}", methods=["GET", "HEAD"])
def public_policy(request: Request, document_id: str, services: ServicesDep,
                  rev: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None) -> Response:
    if len(document_id) > 120:
        raise NotFound("No such policy.", code="unknown_document")
    knowledge = services.knowledge
    current = next((r for r in knowledge.in_force() if r.document_id == document_id), None)
    if rev is None:
        if current is None:
            raise NotFound("This policy is not published (it may have been retired).", code="not_published")
        revision = current
    else:
        try:
            revision = knowledge.get(document_id, rev)
        except NotFound as exc:  # its message is for editors (it names a CLI command)
            raise NotFound(f"This policy has no revision {rev}." if current is not None else "No such policy.",
                           code=exc.code) from None
        if not _was_in_force(revision, datetime.now(UTC)):
            # a draft, or a revision scheduled for later (or retired before its start): an unannounced
            # policy change must not be readable by guessing ``?rev=N``
            raise NotFound(f"Revision {rev} of this policy was never published.", code="not_published")
    # A policy changes when an editor publishes: browsers and proxies may keep the page but must
    # ask again each time (a 304 while it is unchanged), so a customer never reads a stale policy.
    etag = _policy_etag(revision, current)
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        response = Response(status_code=304)
    else:
        response = render(request, "console/kb_public.html", {
            "doc": revision, "current": current,
            "is_current": current is not None and current.number == revision.number,
            "html": render_markdown(revision.content, revision.title), "now": datetime.now(UTC)})
    response.headers["Cache-Control"] = "public, no-cache"
    response.headers["ETag"] = etag
    secure_headers(response)
    return response


def _was_in_force(revision: Any, now: datetime) -> bool:
    """Whether a revision has been the public policy at some moment up to ``now`` (a reply may cite it)."""
    if revision.status not in ("published", "retired") or revision.published_at is None:
        return False
    start, end = revision.effective_from, revision.effective_until
    if start is not None and start > now:
        return False
    return end is None or start is None or end > start


def install(app: FastAPI) -> None:
    """Mount the KB editor and the public policy pages (called by ``create_app``)."""
    if not hasattr(app.state, "console_templates"):
        from bot.web.routes_console import make_templates

        app.state.console_templates = make_templates()
    app.include_router(router)

