"""Model cards: Markdown to HTML that is safe to put in a page, whatever the card contains.

Two layers: markdown-it with raw HTML turned off (so `<script>` in a card is text, and its link
validator drops `javascript:` URLs), then nh3 (ammonia) keeping only a fixed list of tags,
attributes and URL schemes. Only the output of `render_card` may be marked safe in a template.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

CARD_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6",
    "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table", "tbody",
    "td", "th", "thead", "tr", "ul",
}  # fmt: skip
CARD_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"align"},
    "td": {"align"},
}
URL_SCHEMES = {"http", "https", "mailto"}
LANGUAGES = ("python", "bash", "sh", "shell", "json", "yaml", "text", "console", "javascript", "toml")
_parser = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def markdown_to_html(text: str) -> str:
    """Markdown to HTML with raw HTML escaped (not yet sanitised)."""
    return _parser.render(text or "")


def sanitise(html: str) -> str:
    """Keep only the tags, attributes and URL schemes a model card needs."""
    return nh3.clean(
        html,
        tags=CARD_TAGS,
        clean_content_tags={"script", "style"},
        attributes=CARD_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        allowed_classes={"code": {f"language-{x}" for x in LANGUAGES}},
    )


def render_card(text: str) -> Markup:
    """A model card's Markdown as sanitised HTML, ready for the template."""
    return Markup(sanitise(markdown_to_html(text)))
