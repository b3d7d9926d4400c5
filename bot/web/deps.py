"""FastAPI dependencies as ``Annotated`` aliases, in one module."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from bot.settings import Settings


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_services(request: Request) -> Any:
    return request.app.state.services


def get_manager(request: Request) -> Any:
    return request.app.state.manager


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ServicesDep = Annotated[Any, Depends(get_services)]
ManagerDep = Annotated[Any, Depends(get_manager)]
