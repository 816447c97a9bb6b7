"""The documentation pages (README.md, docs/*.md, roles/*/README.md) hold
together and speak as documentation does.

- Every relative link and image resolves to a file or directory in the
  repository.
- Every anchor (`#anchor` on the same page, `page.md#anchor` on another)
  matches a heading of that page by GitHub's slug rules, or an explicit
  `<a id=...>` / `<a name=...>`.
- Every absolute URL is a well-formed http(s) URL (no network access).
- No page speaks in the first person or names internal work items
  (`issue 12`, `#12`) in its prose.

Code blocks and inline code are left out of every check but the links
(which never stand in code). Each failure names the file, the line and the
offending text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "roles").glob("*/README.md")]
)
PAGE_IDS = [str(page.relative_to(ROOT)) for page in PAGES]

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
# An inline code span: a run of backticks, text not crossing a blank line,
# the same run again.
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
# [text](target "title") and ![alt](src); the text may hold one level of
# brackets and span lines.
INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
# What was meant as an inline link, well-formed or not.
LINK_LIKE = re.compile(r"!?\[[^\[\]\n]*\]\(([^)\n]*)\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>\n]*>|\S+)", re.M)
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^>\s]*)>", re.I)
BARE_URL = re.compile(r"(?<![<(\[\w])\b(https?://[^\s<>()\[\]`]+)")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\s(?:href|src)\s*=\s*[\"']([^\"']*)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\s(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_TAG = re.compile(r"</?[A-Za-z][^>\n]*>")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

# First person, as whole words. Letters, digits and the characters that
# join words in names and paths (I/O, us-east-1, my.cnf, we_are) on either
# side make it something else.
APOSTROPHES = "'\u2019"
FIRST_PERSON = re.compile(
    rf"(?<![\w/\\.@#$%&*+=~{APOSTROPHES}-])"
    rf"(I(?:[{APOSTROPHES}](?:m|ve|d|ll))?|[Mm]e|[Mm]y|[Mm]yself|[Ww]e(?:[{APOSTROPHES}](?:re|ve|d|ll))?|"
    r"[Oo]ur|[Oo]urs|[Oo]urselves|[Uu]s)"
    rf"(?![\w/\\@{APOSTROPHES}-]|\.\w)"
)
# Words before which "I" is a Roman numeral: "Part I", "type I".
ROMAN_CONTEXT = {
    "act",
    "appendix",
    "book",
    "category",
    "chapter",
    "class",
    "grade",
    "level",
    "part",
    "phase",
    "section",
    "stage",
    "step",
    "tier",
    "type",
    "volume",
    "war",
}
WORK_ITEM = re.compile(
    r"\b(?:issues?|PRs?|pull requests?|tickets?)\s*(?:#\s*)?\d+\b|(?<![\w&/#])#\d+\b", re.I
)


@dataclass(frozen=True)
class Page:
    path: Path
    source: str

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))

    @property
    def text(self) -> str:
        """The source with code blocks and HTML comments blanked (newlines
        kept, so offsets give line numbers): where links are."""
        return HTML_COMMENT.sub(_blank, _without_code_blocks(self.source))

    @property
    def linkable(self) -> str:
        """The text with inline code blanked too: a link's text may hold code."""
        return INLINE_CODE.sub(_blank, self.text)

    @property
    def prose(self) -> str:
        """The words a reader reads: the linkable text without link targets,
        URLs and HTML tags."""
        prose = _blank_group(INLINE_LINK, self.linkable)
        prose = _blank_group(REFERENCE_DEFINITION, prose)
        for pattern in (AUTOLINK, BARE_URL, HTML_TAG):
            prose = pattern.sub(_blank, prose)
        return prose

    def line_of(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1

    def problem(self, offset: int, what: str) -> str:
        number = self.line_of(offset)
        line = self.source.split("\n")[number - 1].strip()
        return f"{self.name}:{number}: {what} in: {line[:160]}"


def _blank(match: re.Match[str]) -> str:
    return re.sub(r"[^\n]", " ", match.group(0))


def _blank_group(pattern: re.Pattern[str], text: str) -> str:
    """The text with group 1 of each match of the pattern blanked."""
    pieces, last = [], 0
    for match in pattern.finditer(text):
        pieces += [text[last : match.start(1)], re.sub(r"[^\n]", " ", match.group(1))]
        last = match.end(1)
    return "".join([*pieces, text[last:]])


def _without_code_blocks(text: str) -> str:
    lines, fence = [], None
    for line in text.split("\n"):
        marker = FENCE.match(line)
        if fence is None and marker:
            fence = marker.group(1)
            lines.append("")
        elif fence is not None:
            # Closed by a run of the same character, at least as long, alone.
            if re.fullmatch(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*", line):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lower-cased,
    with every character but letters, marks, digits, connector punctuation
    (`_`), spaces and `-` dropped, and spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = HTML_TAG.sub("", text)
    text = re.sub(r"(`+)(.+?)\1", r"\2", text)  # code: its content
    text = re.sub(r"(?<!\w)_{1,2}(\S(?:.*?\S)?)_{1,2}(?!\w)", r"\1", text)  # _emphasis_
    kept = "".join(
        char
        for char in text.strip().lower()
        if char in " -"
        or unicodedata.category(char)[0] in "LMN"
        or unicodedata.category(char) == "Pc"
    )
    return kept.replace(" ", "-")


def anchors_of(page: Page) -> frozenset[str]:
    """Every anchor a page offers: its headings' slugs (the second heading
    of a name gets -1, and so on) and its explicit HTML anchors."""
    seen: dict[str, int] = {}
    found = set()
    for line in page.text.split("\n"):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            found.add(base if base not in seen else f"{base}-{seen[base]}")
            seen[base] = seen.get(base, 0) + 1
    found.update(HTML_ANCHOR.findall(page.text))
    return frozenset(found)


@cache
def anchors(path: Path) -> frozenset[str]:
    return anchors_of(Page(path, path.read_text()))


def link_targets(page: Page) -> list[tuple[int, str]]:
    """(line, target) of every link and image of the page outside code."""
    text, found = page.linkable, []
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION, AUTOLINK, HTML_LINK):
        for match in pattern.finditer(text):
            target = match.group(1).strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1]
            found.append((page.line_of(match.start(1)), target))
    # Bare URLs, which GitHub links by itself: those in no link above.
    for pattern in (INLINE_LINK, REFERENCE_DEFINITION, AUTOLINK, HTML_LINK):
        text = pattern.sub(_blank, text)
    for match in BARE_URL.finditer(text):
        found.append((page.line_of(match.start()), match.group(1).rstrip(".,;:!?'\"")))
    return sorted(found)


def url_problem(target: str) -> str | None:
    parts = urlsplit(target)
    if parts.scheme == "mailto":
        if not re.fullmatch(r"mailto:[^@\s]+@[^@\s]+\.[^@\s]+", target):
            return "malformed mailto address"
        return None
    if parts.scheme not in ("http", "https"):
        return "only http(s) URLs are linked"
    host = parts.netloc.rpartition("@")[2]
    if (
        re.search(r"\s", target)
        or not re.fullmatch(
            r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?", host
        )
        or not ("." in host or host.startswith(("localhost", "[")))
    ):
        return "malformed URL"
    return None


def link_problems(page: Page) -> list[str]:
    ends = {match.end() for match in INLINE_LINK.finditer(page.linkable)}
    problems = [
        f"{page.name}:{page.line_of(match.start())}: link {match.group(1)!r}: not a well-formed"
        " link target (spaces must be written %20)"
        for match in LINK_LIKE.finditer(page.linkable)
        if match.end() not in ends
    ]
    for line, target in link_targets(page):
        where = f"{page.name}:{line}: link {target!r}"
        if not target:
            problems.append(f"{where}: empty target")
            continue
        if target.startswith("//"):
            problems.append(f"{where}: protocol-relative; write https://")
            continue
        if SCHEME.match(target):
            problem = url_problem(target)
            if problem:
                problems.append(f"{where}: {problem}")
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:
            offered = anchors_of(page)
            resolved = page.path
        else:
            base = ROOT if path_part.startswith("/") else page.path.parent
            resolved = (base / unquote(path_part).lstrip("/")).resolve()
            if not resolved.is_relative_to(ROOT):
                problems.append(f"{where}: points outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{where}: {resolved.relative_to(ROOT)} does not exist")
                continue
            offered = anchors(resolved) if resolved.suffix == ".md" and resolved.is_file() else None
        if anchor and offered is not None and unquote(anchor) not in offered:
            problems.append(
                f"{where}: no heading of {resolved.relative_to(ROOT)} has the anchor #{anchor}"
            )
    return problems


def first_person_problems(page: Page) -> list[str]:
    problems, prose = [], page.prose
    for match in FIRST_PERSON.finditer(prose):
        word = match.group(1)
        before, after = prose[max(0, match.start() - 40) : match.start()], prose[match.end() :]
        if word == "I":
            previous = re.search(r"(\w+)\W*$", before)
            if previous and previous.group(1).lower() in ROMAN_CONTEXT:
                continue  # Part I, type I
            if re.search(r"\(\s*$", before) and re.match(r"\s*\)", after):
                continue  # a list marker: (I)
            if re.match(r",?\s*(?:II|III|IV|V)\b", after) or re.search(
                r"\b(?:II|III|IV|V),?\s*(?:and\s+|or\s+)?$", before
            ):
                continue  # I, II and III
        if word.lower() == "us" and re.search(r"\d\s?$", before):
            continue  # microseconds: 150 us
        problems.append(page.problem(match.start(), f"first person {word!r}"))
    return problems


def work_item_problems(page: Page) -> list[str]:
    return [
        page.problem(match.start(), f"internal work item {match.group(0)!r}")
        for match in WORK_ITEM.finditer(page.prose)
    ]


def read_page(path: Path) -> Page:
    return Page(path, path.read_text())


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_every_link_resolves(path: Path) -> None:
    problems = link_problems(read_page(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_no_page_speaks_in_the_first_person(path: Path) -> None:
    problems = first_person_problems(read_page(path))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", PAGES, ids=PAGE_IDS)
def test_no_page_names_internal_work_items(path: Path) -> None:
    problems = work_item_problems(read_page(path))
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for _, target in link_targets(read_page(ROOT / "README.md"))
        if not SCHEME.match(target)
    }
    missing = [
        str(page.relative_to(ROOT))
        for page in sorted((ROOT / "docs").glob("*.md"))
        if page.resolve() not in linked
    ]
    assert not missing, f"README.md links no page {missing}"


def test_the_readme_examples_table_names_every_example_and_the_scenario_that_runs_it() -> None:
    """Each row of the README's Examples table: a playbook that exists, and
    scenarios that converge it (molecule.yml) or run it from their tests (a
    file of the scenario, or a module of molecule/ its tests import)."""
    section = read_page(ROOT / "README.md").source.split("\n## Examples\n", 1)[1]
    rows = re.findall(r"^\| `([^`]+\.yml)` \|.*\| ([^|]+) \|$", section.split("\n## ", 1)[0], re.M)
    listed = set()
    for playbook, scenarios in rows:
        path = ROOT / playbook if "/" in playbook else ROOT / "playbooks/examples" / playbook
        assert path.is_file(), f"README.md Examples: {playbook} does not exist"
        listed.add(path)
        wanted = str(path.relative_to(ROOT))
        for scenario in re.findall(r"`([\w-]+)`", scenarios):
            directory = ROOT / "molecule" / scenario
            assert (directory / "molecule.yml").is_file(), (
                f"README.md Examples: no scenario {scenario}"
            )
            texts = [f.read_text() for f in directory.rglob("*") if f.is_file()]
            for module in re.findall(r"^from (\w+) import", "\n".join(texts), re.M):
                if (ROOT / "molecule" / f"{module}.py").is_file():
                    texts.append((ROOT / "molecule" / f"{module}.py").read_text())
            assert any(wanted in text for text in texts), (
                f"README.md Examples: scenario {scenario} neither converges nor runs {wanted}"
            )
    examples = {
        path
        for path in (ROOT / "playbooks/examples").glob("*.yml")
        if path.name != "requirements.yml"
    }
    assert examples <= listed, f"README.md Examples lacks {sorted(examples - listed)}"


# The checker itself, on made-up pages.


def check_text(text: str) -> list[str]:
    """Every problem of a made-up page standing at docs/page.md."""
    page = Page(ROOT / "docs/page.md", text)
    return link_problems(page) + first_person_problems(page) + work_item_problems(page)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("The push channel", "the-push-channel"),
        (
            "Two wiring paths: system Apache or mod_wsgi-express",
            "two-wiring-paths-system-apache-or-mod_wsgi-express",
        ),
        ("`mod_wsgi_ws_sidecar_venv` and pip", "mod_wsgi_ws_sidecar_venv-and-pip"),
        ("Faults it survives (Debian 12 & 13)", "faults-it-survives-debian-12--13"),
        ("A [linked](x.md) word", "a-linked-word"),
        ("Café, naïve", "café-naïve"),
        ("Limits: what it does *not* do?", "limits-what-it-does-not-do"),
    ],
)
def test_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checks_catch_what_they_should() -> None:
    text = "\n".join(
        [
            "# A page",  # 1
            "",
            "## Setup",
            "",
            "See [missing](nowhere.md) and [here](#setup) and [gone](#nothing).",  # 5
            "Also [limits](limits.md#no-such-heading) and [ok](../README.md).",
            "A [bad URL](https://exa mple.org/), [no host](https:///x) and <ftp://example.org/f>.",
            "I ran it 13 more times; my figures beat ours.",  # 8
            "Fixed by issue 20, see #21.",
            "````sh",  # 10
            "we run I/O here: issue 3, #4, [x](nowhere.md)",
            "```",
            "still code: we",
            "`````",
            "Inline `we` and `#5` are code.",
        ]
    )
    problems = check_text(text)
    expected = [
        "page.md:5: link 'nowhere.md'",
        "page.md:5: link '#nothing'",
        "page.md:6: link 'limits.md#no-such-heading'",
        "page.md:7: link 'https://exa mple.org/': not a well-formed link",
        "page.md:7: link 'https:///x': malformed URL",
        "page.md:7: link 'ftp://example.org/f': only http(s)",
        "page.md:8: first person 'I'",
        "page.md:8: first person 'my'",
        "page.md:8: first person 'ours'",
        "page.md:9: internal work item 'issue 20'",
        "page.md:9: internal work item '#21'",
    ]
    for start in expected:
        assert any(problem.startswith(f"docs/{start}") for problem in problems), (
            start,
            problems,
        )
    assert len(problems) == len(expected), problems
    assert "in: I ran it 13 more times" in "\n".join(problems)


def test_what_is_not_first_person_passes() -> None:
    text = "\n".join(
        [
            "# Not first person",
            "",
            "Disk I/O and the US market; Part I and type I errors; (I) and I, II, III.",
            "A 150 us delay, `we` in code, us-east-1, my.cnf, Mesa, Usage, Iowa.",
            "The README, a user's own: [the page](../README.md#install), <https://example.org/we/us>.",
            "A [URL](https://example.org/my/page#our-part); the C# language; &#35; an entity.",
        ]
    )
    assert check_text(text) == []
