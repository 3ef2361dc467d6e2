#!/usr/bin/env python3
"""Checks the relative links of the project's Markdown: README.md,
CONTRIBUTING.md, CHANGELOG.md and docs/**/*.md.

Every relative link (inline `[text](target)`, images, reference definitions
`[id]: target`, and HTML `href`/`src`) must lead to a file or directory that
exists inside the repository. A link with a fragment into a Markdown file
(`file.md#anchor`, or `#anchor` within the same file) must name one of that
file's headings, slugged as GitHub does, or an explicit `id`/`name` anchor.
Links inside code (fenced blocks and code spans) are not links and are not
checked; absolute URLs (`https:`, `mailto:`, ...) are not checked.

Prints each broken link as `file:line: link` and exits 1 if there is any;
otherwise prints one summary line and exits 0. Runs from anywhere: the
repository's root is two levels above this file. Standard library only.
"""
import os
import re
import sys
import unicodedata
from urllib.parse import unquote

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOP_FILES = ("README.md", "CONTRIBUTING.md", "CHANGELOG.md")
DOCS_DIR = "docs"

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
# [text](target "title"): the text may hold one level of brackets; the
# target is <...> or a run without spaces, with balanced parentheses.
INLINE = re.compile(
    r"!?\[(?:[^\[\]\\]|\\.|\[[^\[\]]*\])*\]"
    r"\(\s*(<[^<>\n]*>|(?:[^\s()<>\\]|\\.|\([^\s()]*\))*)"
    r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?\s*\)"
)
REFDEF = re.compile(r"^ {0,3}\[(?:[^\]\\]|\\.)+\]:[ \t]*(<[^<>\n]*>|\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*(\"[^\"]*\"|'[^']*')", re.I)
HTML_ANCHOR = re.compile(r"<[a-z][^>]*?\b(?:id|name)\s*=\s*(\"[^\"]*\"|'[^']*')", re.I)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files():
    files = [f for f in TOP_FILES if os.path.isfile(os.path.join(ROOT, f))]
    docs = os.path.join(ROOT, DOCS_DIR)
    for folder, dirs, names in os.walk(docs):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".md"):
                files.append(os.path.relpath(os.path.join(folder, name), ROOT))
    return files


def blocks(lines):
    """Yields (first line number, [lines]) for each run of non-blank lines
    outside fenced code, and ("fence", ...) markers are dropped: fenced code
    is no Markdown."""
    fence = None
    block, start = [], 0
    for number, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and not line.strip()[len(m.group(1)):].strip():
                fence = None
            continue
        if m:
            if block:
                yield start, block
            block = []
            fence = m.group(1)
            continue
        if line.strip():
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def mask_code_spans(text):
    """Blanks out code spans (a run of n backticks up to the next run of
    exactly n), keeping newlines, so that offsets and line numbers stay."""
    out = list(text)
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 2
            continue
        if text[i] != "`":
            i += 1
            continue
        j = i
        while j < len(text) and text[j] == "`":
            j += 1
        run = j - i
        k = j
        close = -1
        while k < len(text):
            if text[k] == "`":
                e = k
                while e < len(text) and text[e] == "`":
                    e += 1
                if e - k == run:
                    close = k
                    break
                k = e
            else:
                k += 1
        if close < 0:
            i = j  # no closing run: the backticks are literal
            continue
        for p in range(i, close + run):
            if out[p] != "\n":
                out[p] = " "
        i = close + run
    return "".join(out)


def heading_text(raw):
    """The text GitHub renders for a heading's Markdown (what it slugs)."""
    text = re.sub(r"`+([^`]*?)`+", r"\1", raw)                       # code spans: their content
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\[[^\]]*\]", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)                               # HTML tags
    text = re.sub(r"(\*+|~~)", "", text)                              # emphasis, strike-through
    text = re.sub(r"(?<![\w])_+|_+(?![\w])", "", text)                # _emphasis_, not snake_case
    text = re.sub(r"\\(.)", r"\1", text)                              # backslash escapes
    return text.strip()


def github_slug(text):
    """GitHub's heading anchor: lower case; letters, marks, digits,
    connector punctuation (_), spaces and hyphens kept, the rest dropped;
    each space a hyphen."""
    kept = []
    for ch in text.lower():
        cat = unicodedata.category(ch)
        if cat[0] in "LMN" or cat == "Pc" or ch in " -":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


_anchor_cache = {}


def anchors_of(path):
    """Every anchor a Markdown file offers: heading slugs (duplicates get
    -1, -2, ... as on GitHub) and explicit id/name attributes."""
    if path in _anchor_cache:
        return _anchor_cache[path]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    found, seen = set(), {}

    def add(text):
        slug = github_slug(heading_text(text))
        if slug in seen:
            seen[slug] += 1
            found.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            found.add(slug)

    for _, block in blocks(lines):
        for i, line in enumerate(block):
            m = ATX.match(line)
            if m:
                add(m.group(2) or "")
            elif i > 0 and SETEXT.match(line) and not ATX.match(block[i - 1]) \
                    and not block[i - 1].lstrip().startswith(("|", "-", "*", "+", ">")):
                add(block[i - 1])
            for a in HTML_ANCHOR.finditer(line):
                found.add(a.group(1)[1:-1])
    _anchor_cache[path] = found
    return found


def links_of(lines):
    """Yields (line number, target) for every link outside code."""
    for start, block in blocks(lines):
        text = mask_code_spans("\n".join(block))
        hits = []
        for m in INLINE.finditer(text):
            hits.append((m.start(1), m.group(1)))
        for m in REFDEF.finditer(text):
            hits.append((m.start(1), m.group(1)))
        for m in HTML_LINK.finditer(text):
            hits.append((m.start(1), m.group(1)[1:-1]))
        for offset, target in sorted(hits):
            target = target.strip()
            if target.startswith("<") and target.endswith(">"):
                target = target[1:-1].strip()
            yield start + text.count("\n", 0, offset), target


def broken(source, target):
    """Why a link from `source` (relative to ROOT) to `target` is broken,
    or None when it resolves (or is not a relative link)."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    path, _, fragment = target.partition("#")
    path = unquote(re.sub(r"\\(.)", r"\1", path))
    fragment = unquote(fragment)
    here = os.path.dirname(os.path.join(ROOT, source))
    if path.startswith("/"):
        resolved = os.path.normpath(os.path.join(ROOT, path.lstrip("/")))
    elif path:
        resolved = os.path.normpath(os.path.join(here, path))
    else:
        resolved = os.path.join(ROOT, source)
    if os.path.commonpath([resolved, ROOT]) != ROOT:
        return "outside the repository"
    if not os.path.exists(resolved):
        return "no such file"
    if fragment and resolved.endswith(".md") and os.path.isfile(resolved):
        if fragment not in anchors_of(resolved):
            return "no such heading"
    return None


def main():
    files = markdown_files()
    checked, bad = 0, 0
    for source in files:
        with open(os.path.join(ROOT, source), encoding="utf-8") as f:
            lines = f.read().split("\n")
        for number, target in links_of(lines):
            if not target or SCHEME.match(target) or target.startswith("//"):
                continue
            checked += 1
            if broken(source, target):
                bad += 1
                print(f"{source}:{number}: {target}")
    if bad:
        print(f"links: {bad} of {checked} relative links in {len(files)} files are broken",
              file=sys.stderr)
        return 1
    print(f"links: {checked} relative links in {len(files)} files resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
