"""Reading the console's pages in tests: the CSRF token of a page's forms, posting an action."""

from __future__ import annotations

import re

import httpx

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found is not None, "the page has no action form"
    return found.group(1)


def message_of(page: httpx.Response) -> str:
    """The message of an error page."""
    found = re.search(r'<p class="error-message" role="alert">(.*?)</p>', page.text, re.S)
    assert found is not None, f"not an error page: {page.text[:200]}"
    return found.group(1)


def notice_of(page: httpx.Response) -> str:
    found = re.search(r'<p class="notice" role="status">(.*?)</p>', page.text, re.S)
    assert found is not None, "the page shows no notice"
    return found.group(1)
