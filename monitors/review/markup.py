"""Prompt and model text as HTML for reviewers: everything escaped first, then a small safe Markdown subset.

Model output (and the prompts it answers) is untrusted: no text of it may become markup of its own. So the whole
text is HTML-escaped before anything else, and only these constructs are then turned into tags, none of which
carries an attribute taken from the text (a code block's language becomes a class only when it is a plain word):

- fenced code blocks (three or more backticks or tildes, an optional language word) -> ``<pre><code>``
- inline code (`` `x` ``) -> ``<code>``, its content left as it is
- ``**strong**`` / ``__strong__`` -> ``<strong>``, ``*em*`` / ``_em_`` -> ``<em>``
- ``#`` headings -> ``<h3>``..``<h6>``; ``-``, ``*``, ``+`` and ``1.`` list items -> ``<ul>`` / ``<ol>``;
  ``>`` quotes -> ``<blockquote>``; blank lines -> paragraphs; single line breaks kept (``<br>``)

Links, images and raw HTML are not part of the subset: they show as the text they are (a link an answer invents is
not something a reviewer should click from this page).
"""

from __future__ import annotations

import html
import re

from markupsafe import Markup

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,24}$")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")
_BULLET = re.compile(r"^[ \t]{0,3}[-*+][ \t]+(.*)$")
_NUMBERED = re.compile(r"^[ \t]{0,3}\d{1,9}[.)][ \t]+(.*)$")
_QUOTE = re.compile(r"^[ \t]{0,3}&gt;[ \t]?(.*)$")  # matched on escaped text: '>' is '&gt;' by then
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_EM = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?!\*)|(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])")
_PLACEHOLDER = "\x00{}\x00"


def render(text: str | None) -> Markup:
    """``text`` as safe HTML: escaped, then the Markdown subset above."""
    if not text:
        return Markup("")
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    prose: list[str] = []
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            prose.append(lines[i])
            i += 1
            continue
        out.append(_blocks(prose))
        prose = []
        fence = opening.group("fence")
        body: list[str] = []
        i += 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence (or the end of the text: an unclosed block runs to the end)
        words = opening.group("info").split()
        language = words[0] if words and _LANGUAGE.match(words[0]) else ""
        css = f' class="language-{html.escape(language)}"' if language else ""
        out.append(f"<pre><code{css}>{html.escape(chr(10).join(body))}</code></pre>")
    out.append(_blocks(prose))
    return Markup("".join(out))


def _blocks(lines: list[str]) -> str:
    """Paragraphs, headings, lists and quotes of escaped prose lines."""
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    list_tag = ""
    quote: list[str] = []

    def flush() -> None:
        nonlocal list_tag
        if paragraph:
            out.append("<p>" + "<br>".join(_inline(line) for line in paragraph) + "</p>")
            paragraph.clear()
        if items:
            out.append(f"<{list_tag}>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + f"</{list_tag}>")
            items.clear()
            list_tag = ""
        if quote:
            out.append("<blockquote>" + _blocks(list(quote)) + "</blockquote>")
            quote.clear()

    for raw in lines:
        line = html.escape(raw, quote=True)
        if not line.strip():
            flush()
            continue
        if (quoted := _QUOTE.match(line)) is not None:
            if not quote:
                flush()
            quote.append(html.unescape(quoted.group(1)))  # escaped again by the nested call
            continue
        if quote:
            flush()
        if (heading := _HEADING.match(line)) is not None:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            continue
        bullet, numbered = _BULLET.match(line), _NUMBERED.match(line)
        if bullet is not None or numbered is not None:
            tag = "ul" if bullet is not None else "ol"
            if paragraph or (items and tag != list_tag):
                flush()
            list_tag = tag
            items.append((bullet or numbered).group(1))  # type: ignore[union-attr]
            continue
        if items:
            items[-1] += " " + line.strip()  # a continuation line of the last item
            continue
        paragraph.append(line)
    flush()
    return "".join(out)


def _inline(escaped: str) -> str:
    """Inline code, strong and emphasis in one escaped line (code spans first, kept out of the rest)."""
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(f"<code>{match.group(2).strip()}</code>")
        return _PLACEHOLDER.format(len(spans) - 1)

    text = _CODE_SPAN.sub(keep, escaped)
    text = _STRONG.sub(lambda m: f"<strong>{m.group(2)}</strong>", text)
    text = _EM.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: spans[int(m.group(1))], text)
