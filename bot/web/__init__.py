"""The web layer: FastAPI app factory, routes, widget and console."""

from bot.web.app import create_app

__all__ = ["create_app"]
