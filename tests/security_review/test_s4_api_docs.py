"""The interactive API docs at /api/v1/docs load django-ninja's bundled Swagger UI from our
own static files, so the page works under the site's Content-Security-Policy (no CDN)."""

import re

import pytest

DOCS = "/api/v1/docs"


def referenced_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


@pytest.mark.django_db
def test_the_docs_page_references_only_same_origin_files_and_they_are_served(client):
    response = client.get(DOCS)
    assert response.status_code == 200
    html = response.content.decode()
    urls = referenced_urls(html)
    assert any(url.endswith("swagger-ui-bundle.js") for url in urls)
    assert any(url.endswith("swagger-ui.css") for url in urls)
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        served = client.get(url)
        served.close()  # a file response: release the file now
        assert served.status_code == 200, url
    # No inline script runs without the page's nonce: the settings travel as JSON data.
    for attributes in re.findall(r"<script([^>]*)>", html):
        assert "src=" in attributes or 'type="application/json"' in attributes, attributes


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_docs_page_renders_the_operations_without_a_csp_violation(live_server, browser):
    page = browser.new_page()
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.on("pageerror", lambda error: messages.append(str(error)))
    page.goto(f"{live_server.url}{DOCS}")
    grants = page.locator(".opblock-summary-path", has_text="/api/v1/grants").first
    try:
        grants.wait_for(timeout=15_000)
    finally:
        operations = page.locator(".opblock").count()
        page.close()
    violations = [text for text in messages
                  if "Content Security Policy" in text or "Refused to" in text]
    assert violations == []
    assert operations >= 9, messages
