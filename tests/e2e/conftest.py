"""Real-browser fixtures: Debian's Chromium through Playwright (never a downloaded browser)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "web"))

from web_fakes import ServerThread, build_app, build_services  # noqa: E402

CHROMIUM = os.environ.get("HYBRIDESK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser():
    """Module-scoped: Playwright's sync API keeps an event loop running in the main thread while
    it is open, which would break every later test that calls asyncio.run()."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


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


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
