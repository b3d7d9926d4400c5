"""Real-browser fixtures: the demo site served by real uvicorn (the browser comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web_fakes import ServerThread, build_app, build_services


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[ServerThread]:
    """The app with the demo page, served by real uvicorn; replies stream word by word."""
    services = build_services(tmp_path_factory.mktemp("e2e"), delay=0.06)
    app = build_app(services)
    with ServerThread(app) as server:
        server.app, server.services = app, services
        yield server
    services.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()

