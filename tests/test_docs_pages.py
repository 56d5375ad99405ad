"""The README, the guides and the benchmarks page: every relative link resolves, and the README keeps its budget.

A link resolves when its file exists (relative to the page, or to the repository root for `/...`);
a `#anchor` on a Markdown page must name one of its headings, slugged as GitHub does. Web links
(`http(s)://`, `mailto:`) are not fetched. Links inside code (fenced blocks and inline spans) are
not links and are skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import ROOT

README_WORD_BUDGET = 2500
"""At most this many words (`str.split`) in README.md, code included: the README is a front door."""

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
MARKDOWN_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HTML_LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SKIPPED_SCHEMES = ("http://", "https://", "mailto:")


def pages() -> list[Path]:
    """The pages whose links are checked: README.md, docs/guide/*.md and benchmarks/README.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def outside_fences(text: str) -> list[str]:
    """The page's lines with fenced code blocks blanked out, line numbers kept."""
    lines, fence = [], ""
    for line in text.splitlines():
        opened = FENCE.match(line)
        if not fence and opened:
            fence = opened.group(1)
            lines.append("")
        elif fence:
            closing = line.strip()
            if closing.startswith(fence) and not closing.strip(fence[0]):
                fence = ""
            lines.append("")
        else:
            lines.append(line)
    return lines


def prose_lines(text: str) -> list[str]:
    """The page's lines with all code blanked out (fenced blocks and inline spans), line numbers kept."""
    return [INLINE_CODE.sub(lambda match: " " * len(match.group(0)), line) for line in outside_fences(text)]


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every link of a page, in reading order: Markdown inline and reference links,
    `src=` and `href=`."""
    found = []
    for number, line in enumerate(prose_lines(text), start=1):
        matches = [match for pattern in (MARKDOWN_LINK, REFERENCE_LINK, HTML_LINK) for match in pattern.finditer(line)]
        found.extend((number, match.group(1)) for match in sorted(matches, key=lambda match: match.start()))
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lowercase, punctuation dropped (not `-` or `_`), spaces to `-`.

    Example:
        >>> github_slug("Coming from the seed project (Milvus 1.x)")
        'coming-from-the-seed-project-milvus-1x'
        >>> github_slug("The PyPI server's `localStorage.path`")
        'the-pypi-servers-localstoragepath'
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; repeated headings get `-1`, `-2`, ... as on GitHub."""
    seen: dict[str, int] = {}
    for line in outside_fences(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen.setdefault(f"{slug}-{count}", 1)
    return set(seen)


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """`page:line: target: why` for each relative link of `page` that does not resolve."""
    problems = []
    name = page.relative_to(root).as_posix()
    for number, target in links(page.read_text(encoding="utf-8")):
        if target.lower().startswith(SKIPPED_SCHEMES):
            continue
        path_part, _, anchor = unquote(target).partition("#")
        if path_part.startswith("/"):
            resolved = root / path_part.lstrip("/")
        elif path_part:
            resolved = page.parent / path_part
        else:
            resolved = page
        if not resolved.exists():
            problems.append(f"{name}:{number}: {target}: no such file {os.path.relpath(resolved, root)}")
        elif anchor and resolved.is_file() and resolved.suffix.lower() == ".md" and anchor not in anchors(resolved):
            problems.append(f"{name}:{number}: {target}: no heading with anchor #{anchor} in {resolved.name}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert page.exists(), f"{page.relative_to(ROOT)} is missing"
    problems = broken_links(page)
    assert problems == [], "broken links:\n" + "\n".join(problems)


def test_the_readme_stays_within_its_word_budget() -> None:
    words = len((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert words <= README_WORD_BUDGET, (
        f"README.md has {words} words, over its budget of {README_WORD_BUDGET}: move details to a page of docs/guide/"
    )


def test_the_guide_index_lists_every_guide() -> None:
    index = ROOT / "docs" / "guide" / "README.md"
    listed = {target.partition("#")[0] for _, target in links(index.read_text(encoding="utf-8"))}
    unlisted = [
        page.name for page in pages() if page.parent == index.parent and page != index and page.name not in listed
    ]
    assert unlisted == [], f"docs/guide/README.md does not link these guides: {unlisted}"


def test_the_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section, with punctuation!\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md#a-section-with-punctuation) and [web](https://example.org/nothing) "
        '[self](#page) <img src="other.md">\n'
        "[gone](missing.md) and [bad anchor](other.md#no-such-section)\n"
        '<a href="nowhere/file.png">x</a> and [self bad](#nothing)\n'
        "```\n[in code](not-checked.md)\n```\n`[inline](not-checked-either.md)`\n",
        encoding="utf-8",
    )
    problems = broken_links(page, root=tmp_path)
    assert [problem.split(":")[1:3] for problem in problems] == [
        ["4", " missing.md"],
        ["4", " other.md#no-such-section"],
        ["5", " nowhere/file.png"],
        ["5", " #nothing"],
    ]
    assert all(problem.startswith("page.md:") for problem in problems)
