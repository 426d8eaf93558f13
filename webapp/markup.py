"""Announcement text: Markdown bodies rendered to HTML and sanitised with nh3 (Ammonia).

The same function renders the compose preview, the inbox and the alert, so what an
author previews is exactly what recipients get. Titles are plain text, escaped where
shown; they never go through here.
"""

from __future__ import annotations

import html
import re

import markdown
import nh3

# Enough for announcements: emphasis, lists, links, quotes, code, small headings, tables.
ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "b",
    "i",
    "u",
    "s",
    "del",
    "mark",
    "small",
    "sub",
    "sup",
    "ul",
    "ol",
    "li",
    "a",
    "blockquote",
    "code",
    "pre",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "abbr",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = {"http", "https", "mailto", "tel"}
# Content dropped together with its tags (not shown as text).
DROPPED_WITH_CONTENT = {
    "script",
    "style",
    "template",
    "svg",
    "math",
    "iframe",
    "object",
    "noscript",
    "textarea",
    "select",
}


def render_markdown(text: str) -> str:
    """Markdown -> safe HTML (no script, no event handlers, no javascript:/data: URLs)."""
    html = markdown.markdown(
        text or "",
        extensions=["sane_lists", "tables", "fenced_code"],
        # align="..." rather than style="text-align: ...", which the sanitiser removes.
        extension_configs={"tables": {"use_align_attribute": True}},
        output_format="html",
    )
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


# Tags that separate words: a push or e-mail shows "a b" for <p>a</p><p>b</p>, and
# "lunch!" for <strong>lunch</strong>!
_BLOCK_TAG = re.compile(
    r"</?(?:p|br|hr|li|ul|ol|blockquote|pre|h[3-6]|table|thead|tbody|tr|th|td)\b[^>]*>", re.I
)
_ANY_TAG = re.compile(r"<[^>]*>")


def plain_text(body_html: str) -> str:
    """The text of a rendered body (render_markdown's output, already sanitised): tags
    dropped, entities decoded, all whitespace collapsed to single spaces."""
    text = _ANY_TAG.sub("", _BLOCK_TAG.sub(" ", body_html or ""))
    return " ".join(html.unescape(text).split())
