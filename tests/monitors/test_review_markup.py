"""Model text as HTML for reviewers: everything escaped first, then a small safe Markdown subset."""

from __future__ import annotations

import re

import pytest

from monitors.review.markup import render

ATTACKS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<svg/onload=alert(1)>",
    '"><iframe src="javascript:alert(1)"></iframe>',
    "[click](javascript:alert(1))",
    "![x](https://example.com/x.png)",
    "**<script>alert(1)</script>**",
    "`<img src=x onerror=alert(1)>`",
    "```html\n<script>alert(1)</script>\n```",
    '```js" onmouseover="alert(1)\nx\n```',
    "> <img src=x onerror=alert(1)>",
    "- <a href='javascript:alert(1)'>x</a>",
    "# <style>body{display:none}</style>",
    "\x00<script>alert(1)</script>",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_no_text_becomes_markup(text: str) -> None:
    html = str(render(text))
    tags = set(re.findall(r"</?([a-zA-Z0-9]+)", html))
    assert tags <= {"p", "br", "pre", "code", "strong", "em", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote"}
    assert not re.search(r"<[a-z0-9]+ (?!class=\"language-[A-Za-z0-9_+#.-]+\">)", html), html  # no other attribute
    assert "<a " not in html and "<img" not in html and "<script" not in html


def test_the_subset() -> None:
    assert str(render("Some **bold**, *em*, `x < y` and __also__.")) == (
        "<p>Some <strong>bold</strong>, <em>em</em>, <code>x &lt; y</code> and <strong>also</strong>.</p>"
    )
    assert str(render("# Title\n\n- a\n- b\n\n1. one\n2. two")) == (
        "<h3>Title</h3><ul><li>a</li><li>b</li></ul><ol><li>one</li><li>two</li></ol>"
    )
    assert str(render("```python\nprint('<b>')\n```")) == (
        '<pre><code class="language-python">print(&#x27;&lt;b&gt;&#x27;)</code></pre>'
    )
    quoted = "<blockquote><p>quoted</p></blockquote><p>line two</p><p>after</p>"
    assert str(render("> quoted\nline two\n\nafter")) == quoted
    assert str(render("one\ntwo")) == "<p>one<br>two</p>"
    assert str(render("```\nunclosed <b>")) == "<pre><code>unclosed &lt;b&gt;</code></pre>"
    assert str(render("")) == "" and str(render(None)) == ""


def test_snake_case_and_arithmetic_stay_text() -> None:
    assert str(render("use my_var_name and 2*3*4")) == "<p>use my_var_name and 2*3*4</p>"


def test_korean_is_kept_as_written() -> None:
    text = "서울은 **대한민국**의 수도입니다.\n\n```python\nprint('안녕')\n```"
    assert str(render(text)) == (
        "<p>서울은 <strong>대한민국</strong>의 수도입니다.</p>"
        '<pre><code class="language-python">print(&#x27;안녕&#x27;)</code></pre>'
    )
