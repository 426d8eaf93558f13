"""Markdown bodies are rendered to HTML with nothing that can run, and ordinary Markdown
survives. The same function feeds the preview, the inbox and the alert."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from webapp.markup import ALLOWED_TAGS, render_markdown

SAFE_SCHEMES = {"http", "https", "mailto", "tel"}
REL = "noopener noreferrer nofollow"


class Parsed(HTMLParser):
    """Every start tag with its attributes, and any comment or declaration, of an output."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_comment(self, data):
        self.comments.append(data)

    def handle_decl(self, decl):
        self.comments.append(decl)

    def attributes(self) -> list[str]:
        return [name for _, attrs in self.tags for name in attrs]

    def hrefs(self) -> list[str]:
        return [attrs["href"] for tag, attrs in self.tags if "href" in attrs]


def scheme_of(url: str) -> str:
    """The scheme a browser would see (WHATWG URL parsing): entities decoded, leading
    and trailing controls and spaces stripped, tabs and newlines removed everywhere."""
    url = html.unescape(url).strip("".join(map(chr, range(0x21))))
    return urlsplit(re.sub(r"[\t\n\r]", "", url)).scheme.lower()


def assert_inert(output: str) -> None:
    """Nothing in `output` can run script, restyle the page or drive htmx."""
    lowered = output.lower()
    # Attribute values are escaped text (a title may say "onclick="): check tags without them.
    tags_only = re.sub(r'="[^"]*"', '=""', lowered)
    assert "<script" not in lowered
    assert "javascript:" not in lowered and "vbscript:" not in lowered
    assert "style=" not in tags_only
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", tags_only), output
    assert not re.search(r"<[^>]*\s(hx|data)-[a-z-:]*\s*=", tags_only), output
    parsed = Parsed(output)
    assert not parsed.comments, output
    for tag, _ in parsed.tags:
        assert tag in ALLOWED_TAGS, (tag, output)
    for name in parsed.attributes():
        assert not name.startswith(("on", "hx-", "data-")), (name, output)
        assert name not in (
            "style",
            "src",
            "srcdoc",
            "action",
            "formaction",
            "xlink:href",
            "background",
            "id",
            "class",
        ), (name, output)
    for href in parsed.hrefs():
        scheme = scheme_of(href)
        assert scheme in SAFE_SCHEMES or scheme == "", (href, output)


XSS = {
    # Script, plain and disguised
    "script": "<script>alert(1)</script>",
    "script upper": "<SCRIPT SRC=https://evil.example/x.js></SCRIPT>",
    "script in markdown": "Hello **there** <script>alert(document.cookie)</script> end",
    "split script": "<scr<script>ipt>alert(1)</script>",
    "nested script": "<<script>script>alert(1)<</script>/script>",
    "script in svg": "<svg><script>alert(1)</script></svg>",
    "script in template": "<template><script>alert(1)</script></template>",
    "script in textarea": "<textarea><script>alert(1)</script></textarea>",
    "noscript breakout": '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    # Event handlers
    "img onerror": "<img src=x onerror=alert(1)>",
    "img onerror quoted": '<img src="x" onerror="alert(1)">',
    "a onclick": '<a href="https://ok.example" onclick="alert(1)">x</a>',
    "p onclick": '<p onclick="alert(1)">click</p>',
    "body onload": "<body onload=alert(1)>",
    "svg onload": "<svg onload=alert(1)><circle r=1 /></svg>",
    "details ontoggle": "<details open ontoggle=alert(1)><summary>s</summary></details>",
    "input onfocus": "<input autofocus onfocus=alert(1)>",
    "marquee onstart": "<marquee onstart=alert(1)>m</marquee>",
    "video source onerror": "<video><source onerror=alert(1)></video>",
    "abbr onmouseover": '<abbr title="x" onmouseover="alert(1)">A</abbr>',
    "strong onmouseover": '<strong onmouseover="alert(1)">bold</strong>',
    "handler with slash": "<img/src=x/onerror=alert(1)>",
    "handler uppercase": '<b ONCLICK="alert(1)">b</b>',
    # URLs in links
    "md javascript": "[x](javascript:alert(1))",
    "md javascript mixed case": "[x](JaVaScRiPt:alert(1))",
    "md javascript leading space": "[x]( javascript:alert(1))",
    "md javascript angle": "[x](<javascript:alert(1)>)",
    "md javascript reference": "[x][r]\n\n[r]: javascript:alert(1)",
    "md javascript entity": "[x](jav&#x61;script:alert(1))",
    "md javascript entity decimal": "[x](&#106;avascript:alert(1))",
    "md data": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "md data upper": "[x](DATA:text/html,<script>alert(1)</script>)",
    "md vbscript": "[x](vbscript:msgbox(1))",
    "md vbscript mixed case": "[x](VbScRiPt:msgbox(1))",
    "html javascript": '<a href="javascript:alert(1)">x</a>',
    "html javascript entity": '<a href="jav&#x61;script:alert(1)">x</a>',
    "html javascript entity no semicolon": '<a href="jav&#x61script:alert(1)">x</a>',
    "html javascript tab entity": '<a href="java&#9;script:alert(1)">x</a>',
    "html javascript newline entity": '<a href="java&#10;script:alert(1)">x</a>',
    "html javascript control prefix": '<a href=" &#14; javascript:alert(1)">x</a>',
    "html javascript raw tab": '<a href="java\tscript:alert(1)">x</a>',
    "html data": '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    "html vbscript": '<a href="VBSCRIPT:msgbox(1)">x</a>',
    "image javascript": "![x](javascript:alert(1))",
    "td background": "<table><tr><td background=javascript:alert(1)>c</td></tr></table>",
    "button formaction": "<button formaction=javascript:alert(1)>b</button>",
    "meta refresh": '<meta http-equiv=refresh content="0;url=javascript:alert(1)">',
    "svg xlink": '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "math xlink": "<math><maction xlink:href=javascript:alert(1)>x</maction></math>",
    # Dangerous elements
    "svg": '<svg width="10"><circle r="5" fill="red"/></svg>',
    "math": "<math><mi>x</mi><mo>=</mo><mn>1</mn></math>",
    "iframe": '<iframe src="https://evil.example"></iframe>',
    "iframe srcdoc": '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "object": '<object data="https://evil.example/x.swf"></object>',
    "embed": '<embed src="https://evil.example/x.swf">',
    "style element": "<style>body { display: none }</style>",
    "link stylesheet": '<link rel="stylesheet" href="https://evil.example/x.css">',
    "base": '<base href="https://evil.example/">',
    "form input": '<form action="https://evil.example"><input name="password"></form>',
    "form button": '<form method="post" action="/signout"><button>Win</button></form>',
    "select": "<select><option>1</option></select>",
    # htmx and data attributes
    "hx-get": '<div hx-get="/admin/delete" hx-trigger="load">a</div>',
    "hx-post on a": '<a href="https://ok.example" hx-post="/signout" hx-trigger="mouseover">x</a>',
    "hx-on": '<p hx-on:click="alert(1)">p</p>',
    "hx-vals": "<p hx-vals='{\"a\": 1}' hx-swap=outerHTML>p</p>",
    "data attributes": '<p data-hx-get="/x" data-trigger="load">p</p>',
    # Comments and style attributes
    "comment": "<!-- a secret comment -->",
    "conditional comment": "<!--[if IE]><script>alert(1)</script><![endif]-->",
    "comment in text": "Before <!-- hidden --> after",
    "style attribute": '<p style="position:fixed;top:0;left:0;width:100%">overlay</p>',
    "style attribute on a": '<a href="https://ok.example" style="color:red">x</a>',
    "style expression": '<span style="width: expression(alert(1))">s</span>',
    # Markdown that produces attributes
    "md link title breakout": '[x](https://ok.example "a\\" onmouseover=\\"alert(1)")',
}


@pytest.mark.parametrize("payload", XSS.values(), ids=XSS.keys())
def test_xss_corpus_renders_inert(payload):
    output = render_markdown(payload)
    assert_inert(output)


@pytest.mark.parametrize("payload", XSS.values(), ids=XSS.keys())
def test_xss_corpus_is_inert_inside_ordinary_markdown(payload):
    output = render_markdown(f"### Notice\n\nSome **bold** text.\n\n- one\n- two\n\n{payload}\n")
    assert_inert(output)
    assert output.startswith("<h3>Notice</h3>\n<p>Some <strong>bold</strong> text.</p>")
    assert "<li>one</li>" in output


@pytest.mark.parametrize(
    "payload",
    [
        "[x](javascript:alert(1))",
        "[x](jav&#x61;script:alert(1))",
        "[x](data:text/html,hi)",
        '<a href="vbscript:msgbox(1)">x</a>',
        '<a href="java&#9;script:alert(1)">x</a>',
    ],
)
def test_unsafe_links_keep_their_text_but_lose_their_href(payload):
    [(tag, attrs)] = Parsed(render_markdown(payload)).tags[1:]  # after the <p>
    assert tag == "a"
    assert "href" not in attrs
    assert "x" in render_markdown(payload)


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        "<style>body{display:none}</style>",
        "<svg><text>svgtext</text></svg>",
        "<math><mi>mathtext</mi></math>",
        "<iframe>frametext</iframe>",
        "<textarea>areatext</textarea>",
    ],
)
def test_dropped_elements_take_their_content_with_them(payload):
    output = render_markdown(payload)
    for word in ("alert", "display", "svgtext", "mathtext", "frametext", "areatext"):
        assert word not in output


@pytest.mark.parametrize(
    "payload",
    [
        '<p style="color:red">Red</p>',
        '<div hx-get="/x">Kept text</div>',
        '<p data-x="1" class="c" id="i">Para</p>',
    ],
)
def test_stripped_attributes_leave_the_text(payload):
    output = render_markdown(payload)
    assert re.sub(r"<[^>]+>", "", output) in ("Red", "Kept text", "Para")
    assert Parsed(output).attributes() == []


# Ordinary Markdown survives -----------------------------------------------------------

MARKDOWN = {
    "bold": ("**Bring lunch**", "<p><strong>Bring lunch</strong></p>"),
    "emphasis": ("*soon* and _now_", "<p><em>soon</em> and <em>now</em></p>"),
    "bullet list": ("- pens\n- paper", "<ul>\n<li>pens</li>\n<li>paper</li>\n</ul>"),
    "numbered list": ("1. one\n2. two", "<ol>\n<li>one</li>\n<li>two</li>\n</ol>"),
    "quote": ("> be kind", "<blockquote>\n<p>be kind</p>\n</blockquote>"),
    "inline code": ("Run `make test`", "<p>Run <code>make test</code></p>"),
    "indented code": ("    x < y && z", "<pre><code>x &lt; y &amp;&amp; z\n</code></pre>"),
    "small heading": ("### Timetable", "<h3>Timetable</h3>"),
    "rule": ("a\n\n---\n\nb", "<p>a</p>\n<hr>\n<p>b</p>"),
    "escaped angle brackets": ("1 < 2 > 0", "<p>1 &lt; 2 &gt; 0</p>"),
    "ampersand": ("Tom & Jerry", "<p>Tom &amp; Jerry</p>"),
    "allowed inline html": (
        "H<sub>2</sub>O and <mark>this</mark>",
        "<p>H<sub>2</sub>O and <mark>this</mark></p>",
    ),
    "empty": ("", ""),
}


@pytest.mark.parametrize(("text", "expected"), MARKDOWN.values(), ids=MARKDOWN.keys())
def test_ordinary_markdown_renders_as_expected(text, expected):
    assert render_markdown(text) == expected


def test_none_renders_as_empty():
    assert render_markdown(None) == ""


def test_tables_survive_with_alignment():
    output = render_markdown("| Day | Room |\n|:---|---:|\n| Mon | 12 |\n| Tue | 7 |")
    tags = [tag for tag, _ in Parsed(output).tags]
    assert tags == ["table", "thead", "tr", "th", "th", "tbody", "tr", "td", "td", "tr", "td", "td"]
    assert '<th align="left">Day</th>' in output
    assert '<td align="right">12</td>' in output


@pytest.mark.parametrize(
    "url",
    [
        "https://school.test/trip?day=2&x=1",
        "http://example.org/a_(b)",
        "mailto:office@school.test",
        "tel:+49301234567",
    ],
)
def test_safe_links_survive_with_rel_and_target(url):
    output = render_markdown(f"See [details]({url}) now")
    [attrs] = [a for t, a in Parsed(output).tags if t == "a"]
    assert attrs["href"] == url
    assert attrs["rel"] == REL
    assert attrs["target"] == "_blank"
    assert ">details</a>" in output


def test_autolinks_and_titles_get_rel():
    output = render_markdown('<https://school.test> and [t](https://a.test "The title")')
    links = [attrs for tag, attrs in Parsed(output).tags if tag == "a"]
    assert [a["href"] for a in links] == ["https://school.test", "https://a.test"]
    assert all(a["rel"] == REL and a["target"] == "_blank" for a in links)
    assert links[1]["title"] == "The title"


def test_authors_cannot_override_rel_or_target():
    output = render_markdown('<a href="https://a.test" rel="opener" target="_self">x</a>')
    [(_, attrs)] = [(t, a) for t, a in Parsed(output).tags if t == "a"]
    assert attrs == {"href": "https://a.test", "target": "_blank", "rel": REL}


def test_a_realistic_announcement_keeps_its_structure():
    text = (
        "### Sports day\n\nPlease bring **water** and *sun cream*.\n\n"
        "1. Arrive at 8:00\n2. Meet at the [field](https://school.test/map)\n\n"
        "| Class | Start |\n|---|---|\n| 7a | 9:00 |\n\n> Parents welcome!"
    )
    tags = {tag for tag, _ in Parsed(render_markdown(text)).tags}
    assert {"h3", "p", "strong", "em", "ol", "li", "a", "table", "th", "td", "blockquote"} <= tags


@pytest.mark.parametrize(
    "text", [*XSS.values(), *(t for t, _ in MARKDOWN.values())], ids=[*XSS.keys(), *MARKDOWN.keys()]
)
def test_rendering_is_deterministic(text):
    first = render_markdown(text)
    assert all(render_markdown(text) == first for _ in range(3))


@pytest.mark.parametrize("text", ["**a** [l](https://a.test)", *XSS.values()])
def test_rendering_its_own_output_again_stays_inert(text):
    """Sanitised HTML fed back in (e.g. an edit of a sent body) is still inert."""
    once = render_markdown(text)
    assert_inert(render_markdown(once))
