"""Safe Markdown rendering for the KB editor preview and the public policy pages.

Raw HTML is disabled (it is shown as text), ``javascript:``/``data:`` links are refused by
markdown-it's link validation, and headings get the same anchors the chunker gives the
sections, so a citation's ``#anchor`` lands on the cited section.
"""

from __future__ import annotations

from functools import lru_cache

from markdown_it import MarkdownIt
from markupsafe import Markup

from knowledge.chunking import anchor_for
from knowledge.store import MAX_CONTENT_CHARS

#: as long as a revision may be: a page cut short would hide sections the bot cites (web QA: a 231,000-character
#: policy stopped at 200,000 characters, and its last section was cited all the same)
MAX_PREVIEW_CHARS = MAX_CONTENT_CHARS


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable("table")


def render_markdown(text: str, title: str = "") -> Markup:
    """HTML for ``text`` (trusted output: every input character is escaped or parsed)."""
    md = _parser()
    tokens = md.parse(text[:MAX_PREVIEW_CHARS])
    stack: list[tuple[int, str]] = []
    seen: set[str] = set()
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            level = int(tok.tag[1])
            heading = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            while stack and stack[-1][0] >= level:
                stack.pop()
            if level == 1 and not stack and heading.lower() == title.strip().lower():
                if "overview" not in seen:  # the text before the first section cites as #overview
                    seen.add("overview")
                    tok.attrSet("id", "overview")
                continue  # the chunker drops a leading H1 equal to the title from the path
            stack.append((level, heading))
            anchor = anchor_for([h for _, h in stack])
            if anchor not in seen:
                seen.add(anchor)
                tok.attrSet("id", anchor)
        elif tok.type == "inline" and tok.children:
            for child in tok.children:
                if child.type == "link_open":
                    child.attrSet("rel", "nofollow noopener noreferrer")
    return Markup(md.renderer.render(tokens, md.options, {}))  # noqa: S704 - escaped by markdown-it
