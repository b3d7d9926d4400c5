"""FastAPI dependencies as ``Annotated`` aliases, in one module."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bot.settings import Settings


# Dependencies that only read app state are ``async def``: FastAPI runs a plain ``def``
# dependency in its thread pool, which cost a thread hop per dependency per request.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_services(request: Request) -> Any:
    return request.app.state.services


async def get_manager(request: Request) -> Any:
    return request.app.state.manager


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServicesDep = Annotated[Any, Depends(get_services)]
ManagerDep = Annotated[Any, Depends(get_manager)]


# -- chat API (customer side) ---------------------------------------------------------------
# A customer proves access with the conversation's secret token: ``Authorization: Bearer <token>``,
# or ``?token=`` where a header cannot be set (a plain EventSource).
_bearer = HTTPBearer(auto_error=False, description="the conversation token from POST /api/conversations")


async def conversation_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[str | None, Query(max_length=200, description="conversation token (for EventSource)")] = None,
) -> str | None:
    if credentials is not None and credentials.credentials:
        return credentials.credentials
    return token


async def customer_conversation(conversation_id: str, request: Request,
                                token: Annotated[str | None, Depends(conversation_token)]) -> Any:
    """The conversation the token opens; 403 (same answer whether it exists or not) otherwise."""
    import asyncio

    return await asyncio.to_thread(request.app.state.manager.authorize, conversation_id, token)


async def get_live(request: Request) -> Any:
    return request.app.state.live


ConversationTokenDep = Annotated[str | None, Depends(conversation_token)]
CustomerConversationDep = Annotated[Any, Depends(customer_conversation)]
LiveDep = Annotated[Any, Depends(get_live)]


# Console accounts and roles (see bot.web.auth): anonymous -> 401, wrong role -> 403, and unsafe
# methods must carry the session's CSRF token.
from sqlalchemy.orm import Session  # noqa: E402

from bot.web.auth import (  # noqa: E402
    ConsoleUser,
    db_session,
    require_admin,
    require_agent,
    require_any,
    require_editor,
)

#: a larger number in a path or query cannot be a database id (and would overflow SQLite's integer)
MAX_ID = 2**62

CurrentUser = Annotated[ConsoleUser, Depends(require_any)]
CurrentAgent = Annotated[ConsoleUser, Depends(require_agent)]
CurrentEditor = Annotated[ConsoleUser, Depends(require_editor)]
CurrentAdmin = Annotated[ConsoleUser, Depends(require_admin)]
SessionDep = Annotated[Session, Depends(db_session)]
