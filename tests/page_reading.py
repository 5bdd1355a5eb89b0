"""Reading a page as its reader does: the visible text, and which elements carry which attributes."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser


def text_of(page: str) -> str:
    """The visible text of an HTML page, whitespace collapsed (what a reader sees)."""
    page = re.sub(r"(?s)<(script|style|title)\b.*?</\1>", " ", page)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def get(client, url: str, status: int = 200) -> str:
    """The page at `url`, which must answer `status`."""
    reply = client.get(url)
    assert reply.status_code == status, reply.get_data(as_text=True)[:2000]
    return reply.get_data(as_text=True)


class Elements(HTMLParser):
    """Every start tag with its attributes, to check what is an element and what is text."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]
