"""The agent console: sign-in, transcripts, corrections, live takeover, analytics, users.

Every route except the sign-in form needs a role (``bot.web.deps``): anonymous requests get
401 (browsers are redirected to the sign-in form), the wrong role 403, and every POST must
carry the session's CSRF token. Routes stay thin: the work is in ``bot.console``.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from bot.console import analytics as analytics_service
from bot.console import corrections as corrections_service
from bot.console import takeover as takeover_service
from bot.console import transcripts as transcripts_service
from bot.console.health import model_alert
from bot.console.kb_editor import revision_badge
from bot.web import auth
from bot.web.deps import MAX_ID, CurrentAdmin, CurrentAgent, CurrentUser, ManagerDep, ServicesDep, SessionDep
from bot.web.notices import notice_for, with_notice
from bot.web.routes_chat import reply_in_background, spawn_reply
from knowledge.errors import HybrideskError, InvalidInput, NotFound

WEB_DIR = Path(__file__).resolve().parent
router = APIRouter(prefix="/console", include_in_schema=False)


# ---------------------------------------------------------------- rendering helpers


MODE_LABELS = {"bot": "bot answers", "human": "agent holds it", "handoff_requested": "waiting for a person"}


def make_templates() -> Jinja2Templates:
    """Jinja2 with autoescaping on for every template (customer and policy text is hostile)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["dt"] = lambda v: v.strftime("%Y-%m-%d %H:%M") if v else ""
    # "handoff_requested" as an agent reads it (console.js has the same words for live updates)
    env.filters["mode_label"] = lambda v: MODE_LABELS.get(v, v)
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"
    env.filters["ms"] = lambda v: "–" if v is None else f"{v:,.0f} ms"
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.globals["kb_link"] = kb_link
    env.globals["urlencode"] = urlencode
    env.globals["revision_badge"] = revision_badge
    return Jinja2Templates(env=env)


def kb_link(citation: dict[str, Any]) -> str:
    """Link of a cited section at the exact revision: ``/kb/{doc}?rev=N#anchor``."""
    doc = quote(str(citation.get("document_id") or ""), safe="")
    rev = citation.get("revision")
    anchor = citation.get("anchor")
    url = f"/kb/{doc}" + (f"?rev={int(rev)}" if isinstance(rev, int) else "")
    return url + (f"#{quote(str(anchor), safe='-_')}" if anchor else "")


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    user = getattr(request.state, "console_user", None)
    # (the agent's message box says the limit the server applies to every chat message)
    ctx = {"user": user, "csrf_token": user.csrf_token if user else "",
           "max_message_chars": request.app.state.settings.max_message_chars,
           # what the last action did ("?done=published"), from a fixed list (bot/web/notices.py)
           "done_notice": notice_for(request.query_params.get("done")), **context}
    response = request.app.state.console_templates.TemplateResponse(request, name, ctx, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    secure_headers(response)
    return response


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def secure_headers(response: Response) -> None:
    """No inline script can run on a console page, even if some text slipped through unescaped."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def hub_publish(request: Request):
    hub = getattr(request.app.state, "live", None)
    if hub is not None:
        return hub.publish
    from bot.web import live

    return live.publish


def safe_next(value: str | None) -> str:
    """Only same-site console paths (no open redirect), with their query ("?r1=1&r2=2")."""
    path = (value or "").partition("?")[0]
    if value and path.startswith(("/console", "/kb/")) and "//" not in path and "\\" not in value \
            and not any(ord(c) < 32 for c in value):
        return value
    return "/console"


# ---------------------------------------------------------------- sign-in


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    token = auth.login_csrf_token(request)
    response = render(request, "console/login.html", {"login_csrf": token, "next": safe_next(next), "error": None})
    auth.set_login_csrf_cookie(response, token, request.app.state.settings)
    return response


@router.post("/login", dependencies=[Depends(auth.verify_login_csrf)])
async def login(request: Request, email: Annotated[str, Form(max_length=254)] = "",
                password: Annotated[str, Form(max_length=1024)] = "",
                next: Annotated[str, Form(max_length=500)] = "") -> Response:
    service = auth.auth_service(request)
    try:
        token, _user = await asyncio.to_thread(service.login, email, password, ip=auth.client_ip(request),
                                               user_agent=request.headers.get("user-agent"))
    except (auth.InvalidCredentials, auth.LoginThrottled, HybrideskError) as exc:
        if wants_json(request):
            response = JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)
        else:
            csrf = auth.login_csrf_token(request)
            response = render(request, "console/login.html",
                              {"login_csrf": csrf, "next": safe_next(next), "error": exc.message, "email": email},
                              status_code=exc.http_status)
            auth.set_login_csrf_cookie(response, csrf, request.app.state.settings)
        if isinstance(exc, auth.LoginThrottled) and (minutes := (exc.fields or {}).get("retry_after_minutes")):
            response.headers["Retry-After"] = str(int(minutes) * 60)  # (what HTTP clients read; in seconds)
        return response
    response = redirect(safe_next(next))
    auth.set_session_cookie(response, token, request.app.state.settings)
    return response


@router.post("/logout")
async def logout(request: Request, user: CurrentUser) -> Response:
    await asyncio.to_thread(auth.auth_service(request).logout, request.cookies.get(auth.SESSION_COOKIE))
    response = redirect(with_notice("/console/login", "signed_out"))
    auth.clear_session_cookie(response, request.app.state.settings)
    return response


@router.get("")
async def home(user: CurrentUser) -> Response:
    return redirect("/console/kb" if user.role == "editor" else "/console/transcripts")


# ---------------------------------------------------------------- transcripts


@router.get("/transcripts")
def transcripts(request: Request, user: CurrentAgent, session: SessionDep,
                cursor: Annotated[str | None, Query(max_length=200)] = None,
                before: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    flt = transcripts_service.TranscriptFilter.from_params(dict(request.query_params))
    page = transcripts_service.search_transcripts(session, flt, cursor, before=None if cursor else before)
    choices = transcripts_service.filter_choices(session)
    next_url = None
    if page.next_cursor:
        next_url = "/console/transcripts?" + urlencode({**flt.to_params(), "cursor": page.next_cursor})
    return render(request, "console/transcripts.html",
                  {"page": page, "f": flt, "choices": choices, "next_url": next_url, "first_page": page.prev_cursor is None,
                   "model_alert": model_alert(session), "waiting": _waiting(request, session)})


def _waiting(request: Request, session: Any) -> list[Any]:
    # a customer quiet for longer than the idle limit of the Rasa channels may have left: listed last
    # (one whose widget is connected to this process is there, however quiet)
    idle = request.app.state.settings.session_expiry_minutes
    streams = getattr(request.app.state, "event_streams", None)
    connected = streams.connected() if streams is not None else frozenset()
    return transcripts_service.waiting_for_a_person(session, idle_minutes=idle, connected=connected)


@router.get("/waiting.json")
def waiting(request: Request, user: CurrentAgent, session: SessionDep) -> dict[str, Any]:
    """Customers waiting for a person, longest first; those quiet for longer than the idle limit
    after the others, ``stale`` (the transcripts page polls this)."""
    rows = _waiting(request, session)
    return {"count": len(rows), "waiting": [
        {"conversation_id": w.id, "since": w.since.isoformat(), "reason": w.reason,
         "last_customer_message": w.last_customer_message,
         "last_active": w.last_active.isoformat() if w.last_active else None, "stale": w.stale} for w in rows]}


@router.get("/conversations/{conversation_id}")
def conversation(request: Request, conversation_id: str, user: CurrentAgent, session: SessionDep) -> Response:
    return _conversation_page(request, session, conversation_id)


def _conversation_page(request: Request, session: Any, conversation_id: str,
                       failed_correction: dict[str, Any] | None = None) -> Response:
    """A conversation's page; with ``failed_correction`` (what was typed, and why it was refused), a 422
    with that reply's correction form open."""
    view = transcripts_service.conversation_view(session, conversation_id)
    return render(request, "console/conversation.html",
                  {"view": view, "conv": view.conversation, "reasons": corrections_service.REASONS,
                   "max_correction": corrections_service.MAX_TEXT,
                   "last_seq": view.messages[-1].message.seq if view.messages else 0,
                   "model_alert": model_alert(session), "failed_correction": failed_correction},
                  status_code=422 if failed_correction else 200)


@router.get("/conversations/{conversation_id}/messages.json")
def conversation_updates(conversation_id: str, user: CurrentAgent, session: SessionDep,
                         after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> dict[str, Any]:
    """New messages and the current mode (the console's live view polls this every few seconds)."""
    from bot.db.repositories import ConversationRepository
    from knowledge.errors import NotFound

    conv = ConversationRepository(session).get(conversation_id)
    if conv is None:
        raise NotFound(f"No conversation {conversation_id!r}.", code="conversation_not_found")
    return {"mode": conv.mode, "held_by_user_id": conv.held_by_user_id, "status": conv.status,
            "messages": transcripts_service.messages_after(session, conversation_id, after)}


@router.post("/conversations/{conversation_id}/takeover")
async def take_over(request: Request, conversation_id: str, user: CurrentAgent, services: ServicesDep) -> Response:
    await asyncio.to_thread(takeover_service.take_over, services.db, conversation_id, user, hub_publish(request))
    if wants_json(request):
        return JSONResponse({"conversation_id": conversation_id, "mode": "human", "held_by_user_id": user.id})
    return redirect(with_notice(f"/console/conversations/{quote(conversation_id)}", "taken_over"))


@router.post("/conversations/{conversation_id}/handback")
async def hand_back(request: Request, conversation_id: str, user: CurrentAgent, services: ServicesDep) -> Response:
    unanswered = await asyncio.to_thread(takeover_service.hand_back, services.db, conversation_id, user,
                                         hub_publish(request))
    if unanswered is not None:  # asked while the agent held the chat, and not answered by them: the bot does
        spawn_reply(request.app, reply_in_background(request.app, conversation_id, unanswered))
    if wants_json(request):
        return JSONResponse({"conversation_id": conversation_id, "mode": "bot"})
    return redirect(with_notice(f"/console/conversations/{quote(conversation_id)}", "handed_back"))


@router.post("/conversations/{conversation_id}/end")
async def end_chat(request: Request, conversation_id: str, user: CurrentAgent, manager: ManagerDep) -> Response:
    """End the chat the agent holds (the conversation manager's ``end``: it takes no more messages)."""
    ended = await asyncio.to_thread(takeover_service.end_chat, manager, conversation_id, user, hub_publish(request))
    if wants_json(request):
        return JSONResponse({"conversation_id": conversation_id, "status": "ended", "ended_now": ended})
    # (a chat that had ended already is said to have been, not to be ended by this agent)
    return redirect(with_notice(f"/console/conversations/{quote(conversation_id)}",
                                "chat_ended" if ended else "chat_already_ended"))


@router.post("/conversations/{conversation_id}/messages")
async def agent_message(request: Request, conversation_id: str, user: CurrentAgent, manager: ManagerDep,
                        text: Annotated[str, Form(max_length=8000)] = "",
                        client_message_id: Annotated[str | None, Form(max_length=64)] = None) -> Response:
    message = await asyncio.to_thread(takeover_service.send_agent_message, manager, conversation_id, user, text,
                                      hub_publish(request), client_message_id)
    if wants_json(request):
        return JSONResponse({"id": message.id, "seq": message.seq, "role": "agent", "text": message.text})
    return redirect(f"/console/conversations/{conversation_id}#m{message.seq}")


# ---------------------------------------------------------------- corrections


@router.post("/messages/{message_id}/corrections")
async def correct(request: Request, message_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], user: CurrentAgent, services: ServicesDep,
                  reason: Annotated[str, Form(max_length=32)] = "",
                  corrected_text: Annotated[str, Form(max_length=8000)] = "",
                  corrected_intent: Annotated[str, Form(max_length=64)] = "",
                  note: Annotated[str, Form(max_length=8000)] = "",
                  conversation_id: Annotated[str, Form(max_length=64)] = "") -> Response:
    from knowledge.errors import InvalidInput

    try:
        correction_id = await asyncio.to_thread(
            corrections_service.create_correction, services.db, user_id=user.id, message_id=message_id, reason=reason,
            corrected_text=corrected_text, note=note, corrected_intent=corrected_intent,
            known_intents=_known_intents(services) if corrected_intent else ())
    except InvalidInput as exc:
        field = exc.fields.get("field")
        if not field or "text/html" not in request.headers.get("accept", ""):  # a browser's form: not an API call
            raise
        # the conversation page again, the form open at that reply with what was typed and the reason at the field
        typed = {"message_id": message_id, "reason": reason, "corrected_text": corrected_text,
                 "corrected_intent": corrected_intent, "note": note, "field": field, "error": exc.message}
        return await asyncio.to_thread(_conversation_with_failed_correction, request, services, message_id, typed)
    if wants_json(request):
        return JSONResponse({"id": correction_id, "message_id": message_id}, status_code=201)
    back = f"/console/conversations/{quote(conversation_id)}" if conversation_id else "/console/corrections"
    # back to the corrected reply (a long chat keeps the agent's place), saying it was saved
    return redirect(with_notice(f"{back}#msg-{message_id}", "correction_saved"))


def _conversation_with_failed_correction(request: Request, services: Any, message_id: int,
                                        typed: dict[str, Any]) -> Response:
    from bot.db.repositories import MessageRepository

    with services.db.unit_of_work() as session:
        message = MessageRepository(session).get(message_id)
        return _conversation_page(request, session, message.conversation_id, typed)


def _known_intents(services: Any) -> frozenset[str]:
    """The active NLU model's intent names (from its metadata file), or none when there is no model."""
    from bot.conversation.nlu.model import read_model_metadata

    registry = services.nlu
    version = registry.active_version() if hasattr(registry, "active_version") else None
    if version is None:
        return frozenset()
    return frozenset(read_model_metadata(registry.root / version).get("intents") or {})


@router.get("/corrections")
def corrections(request: Request, user: CurrentAgent, services: ServicesDep,
                reason: Annotated[str, Query(max_length=32)] = "") -> Response:
    reasons = [reason] if reason in corrections_service.REASONS else None
    items = corrections_service.list_corrections(services.db, reasons=reasons)
    return render(request, "console/corrections.html",
                  {"items": items, "reasons": corrections_service.REASONS, "reason": reason})


@router.post("/corrections/export.jsonl")
def export_corrections(request: Request, user: CurrentAgent, services: ServicesDep,
                       only_new: Annotated[bool, Form()] = False, last_again: Annotated[bool, Form()] = False
                       ) -> Response:
    """A POST with the CSRF token: a "new only" export marks the corrections it exported (what it skips
    next time), so another site must not be able to trigger it with a link."""
    import io

    records = corrections_service.export_records(services.db, only_unexported=only_new, last_again=last_again,
                                                 company=services.company_contacts())
    if only_new and not records and "text/html" in request.headers.get("accept", ""):
        # a browser's "Export new only" with nothing new: say so, rather than download an empty file
        # (scripts, which do not ask for HTML, still get the empty JSONL)
        return redirect(with_notice("/console/corrections", "nothing_to_export"))
    buf = io.StringIO()
    corrections_service.write_jsonl(records, buf)
    return Response(buf.getvalue(), media_type="application/x-ndjson",
                    headers={"Content-Disposition": 'attachment; filename="corrections.jsonl"'})


# ---------------------------------------------------------------- analytics


def _range(date_from: str, date_to: str) -> tuple[date, date]:
    start, end = analytics_service.default_range()
    try:
        start = date.fromisoformat(date_from) if date_from else start
        end = date.fromisoformat(date_to) if date_to else end
    except ValueError as exc:
        raise InvalidInput("Dates must look like YYYY-MM-DD.", code="bad_date") from exc
    if end < start:
        raise InvalidInput("The end date is before the start date.", code="bad_date")
    if (end - start).days > 366:
        raise InvalidInput("Pick a range of at most a year.", code="range_too_long")
    return start, end


@router.get("/analytics")
def analytics(request: Request, user: CurrentUser, session: SessionDep,
              date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
              date_to: Annotated[str, Query(alias="to", max_length=10)] = "") -> Response:
    start, end = _range(date_from, date_to)
    figures = analytics_service.compute(session, start, end)
    return render(request, "console/analytics.html", {"a": figures})


@router.get("/analytics.csv")
def analytics_csv(user: CurrentUser, session: SessionDep,
                  date_from: Annotated[str, Query(alias="from", max_length=10)] = "",
                  date_to: Annotated[str, Query(alias="to", max_length=10)] = "") -> Response:
    start, end = _range(date_from, date_to)
    body = analytics_service.to_csv(analytics_service.compute(session, start, end))
    name = f"hybridesk-analytics-{start.isoformat()}-{end.isoformat()}.csv"
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


# ---------------------------------------------------------------- users (admins)


#: which field of the "Add a user" form an error of ``add_user`` is about
USER_FORM_FIELDS = {"invalid_email": "email", "user_exists": "email", "invalid_role": "role",
                    "weak_password": "password"}


def _users_page(request: Request, session: Any, form: dict[str, Any] | None = None,
                status_code: int = 200) -> Response:
    from bot.db.repositories import UserRepository

    return render(request, "console/users.html", {"users": UserRepository(session).list(), "form": form or {}},
                  status_code=status_code)


@router.get("/users")
def users(request: Request, user: CurrentAdmin, session: SessionDep) -> Response:
    return _users_page(request, session)


@router.post("/users")
def create_user(request: Request, user: CurrentAdmin, services: ServicesDep,
                email: Annotated[str, Form(max_length=254)] = "",
                role: Annotated[str, Form(max_length=16)] = "agent",
                password: Annotated[str, Form(max_length=1024)] = "",
                display_name: Annotated[str, Form(max_length=120)] = "") -> Response:
    from bot.cli_users import add_user

    try:
        with services.db.unit_of_work() as session:
            add_user(session, email, role, password, display_name or None)
    except HybrideskError as exc:
        field = USER_FORM_FIELDS.get(exc.code or "")
        if field is None or wants_json(request):
            raise
        # the form again, with the message at the field it is about (and what was typed, but the password)
        with services.db.unit_of_work() as session:
            return _users_page(request, session, {"email": email, "display_name": display_name, "role": role,
                                                  "error": exc.message, "error_field": field},
                               status_code=exc.http_status)
    return redirect(with_notice("/console/users", "user_added"))


def _set_active(services: Any, user_id: int, admin: Any, active: bool, publish: Any = None) -> None:
    """Disable an account (ending its sessions: enabling it later must not bring an old session, e.g.
    a stolen cookie, back to life; the chats it holds go back in the queue) or enable it again, as
    ``hybridesk users disable|enable`` do."""
    from bot.db.repositories import ConsoleSessionRepository, UserRepository
    from knowledge.errors import Conflict, NotFound

    if user_id == admin.id and not active:
        raise Conflict("You cannot disable your own account.", code="self_disable")
    with services.db.unit_of_work() as session:
        target = UserRepository(session).get(user_id)
        if target is None:
            raise NotFound(f"No user {user_id}.", code="user_not_found")
        target.active = active
        if not active:
            ConsoleSessionRepository(session).delete_for_user(user_id)
    if not active:
        takeover_service.release_held_by(services.db, target, publish)


@router.post("/users/{user_id}/disable")
def disable_user(request: Request, user_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], user: CurrentAdmin,
                 services: ServicesDep) -> Response:
    _set_active(services, user_id, user, False, hub_publish(request))
    return redirect(with_notice(f"/console/users#user-{user_id}", "user_disabled"))


@router.post("/users/{user_id}/enable")
def enable_user(user_id: Annotated[int, PathParam(ge=1, le=MAX_ID)], user: CurrentAdmin, services: ServicesDep) -> Response:
    _set_active(services, user_id, user, True)
    return redirect(with_notice(f"/console/users#user-{user_id}", "user_enabled"))


# ---------------------------------------------------------------- wiring


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith(("/console", "/kb")) and "text/html" in request.headers.get("accept", "")


def _page_message(exc: HybrideskError, request: Request) -> str:
    """An error's message as a console page shows it. A "not found" names what was asked for, which came
    from the address: a crafted link must not put its own sentence on a console page ("No conversation
    'Your session expired - sign in again at ...'"), so a long or odd one is not repeated (security QA)."""
    if isinstance(exc, NotFound):
        asked = [part for part in request.url.path.split("/") if part]
        if any(len(part) > 64 or not re.fullmatch(r"[\w.-]+", part) for part in asked):
            return "Nothing here has that address: check the link, or go back to the list."
        if exc.code == "unknown_document":  # (the store's message sends a CLI user to `hybridesk kb list`)
            return "There is no policy document with that id: the Knowledge base page lists them."
        if exc.code == "unknown_revision" and request.url.path.startswith("/console"):  # (and `hybridesk kb history`;
            # the public page's own message names the revision, for customers)
            return "That policy has no such revision: its History lists the revisions it has."
        if exc.code == "conversation_not_found":
            # a word-like id ("Session-expired.Sign-in-again-at-...") would still be read as a sentence
            return "There is no conversation with that id: the Transcripts page lists them."
    return exc.message


def install_html_errors(app: FastAPI) -> None:
    """Console pages show errors as HTML (and send browsers without a session to sign in);
    everything else keeps the JSON errors of ``bot.web.errors``."""
    json_hybridesk = app.exception_handlers.get(HybrideskError)
    json_http = app.exception_handlers.get(StarletteHTTPException)
    json_validation = app.exception_handlers.get(RequestValidationError)

    async def hybridesk_error(request: Request, exc: HybrideskError) -> Response:
        if isinstance(exc, auth.LoginRequired) and request.method == "GET" and _wants_html(request):
            wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return redirect("/console/login?" + urlencode({"next": safe_next(wanted)}))
        if _wants_html(request):
            return render(request, "console/error.html",
                          {"status": exc.http_status, "code": exc.code, "message": _page_message(exc, request)},
                          status_code=exc.http_status)
        return await json_hybridesk(request, exc)  # type: ignore[misc]

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request):
            return render(request, "console/error.html",
                          {"status": exc.status_code, "code": "http_error", "message": str(exc.detail)},
                          status_code=exc.status_code)
        return await json_http(request, exc)  # type: ignore[misc]

    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if _wants_html(request):
            problems = []
            for err in exc.errors()[:5]:
                field = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
                problem = str(err.get("msg", "invalid"))[:200]
                if err.get("type") == "string_too_long":  # (QA: a 600-character test question said only this)
                    problem = f"too long: at most {(err.get('ctx') or {}).get('max_length', '?')} characters"
                problems.append(f"{field or 'the form'}: {problem}")
            return render(request, "console/error.html",
                          {"status": 422, "code": "invalid_request",
                           "message": "Please check the form. " + "; ".join(problems)},
                          status_code=422)
        return await json_validation(request, exc)  # type: ignore[misc]

    if json_hybridesk is not None:
        app.add_exception_handler(HybrideskError, hybridesk_error)
    if json_validation is not None:
        app.add_exception_handler(RequestValidationError, validation_error)
    if json_http is not None:
        app.add_exception_handler(StarletteHTTPException, http_error)


def install(app: FastAPI) -> None:
    """Mount the console (called by ``create_app``)."""
    app.state.console_templates = make_templates()
    app.include_router(router)
    app.mount("/static/console", StaticFiles(directory=WEB_DIR / "static" / "console"), name="console-static")
    install_html_errors(app)
