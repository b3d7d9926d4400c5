"""The API docs page works offline: every file it loads comes from this app, none from a CDN."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_api_docs_render_with_every_outside_request_blocked(page, site):
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(site.url):
            route.continue_()
        else:  # a CDN, fonts, anything: this machine has no internet, neither may the docs need it
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    response = page.goto(site.url + "/docs")
    assert response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    # Swagger UI rendered the app's own OpenAPI document: the chat API's operations are listed
    page.wait_for_selector(".opblock", timeout=15_000)
    assert page.locator(".opblock-summary-path", has_text="/api/conversations").count() >= 1
    assert outside == []


def test_docs_assets_are_served_and_redoc_is_not_offered(site):
    import httpx

    js = httpx.get(site.url + "/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert httpx.get(site.url + "/docs/assets/%2e%2e/app.py").status_code == 404
    assert httpx.get(site.url + "/redoc").status_code == 404
