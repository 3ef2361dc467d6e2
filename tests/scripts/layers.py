#!/usr/bin/env python3
"""Checks that the extension's imports point down its layers (CONTRIBUTING.md,
"Layers"): the surfaces over the settings, the settings over the PostgreSQL
glue, the glue over the error type, and all of them over the core crate,
which cannot see them at all (it has no path to the extension).

A file in module M depends on module N when it names `crate::N...` (in a
`use` or in code); `super::` and `self::` paths stay inside M's own module.
Tests (`#[cfg(test)] mod ...` blocks and src/pg_tests.rs) may use anything.
Among the surfaces, a surface may use one named after it in SURFACE_ORDER.

It also checks that no files import each other in a circle (A names B's
items and B, directly or not, names A's; `crate::`, `super::` and `self::`
paths, in src/ and in every crates/*/src).

Prints each import that points up (file:line: from -> to) and each circle,
and exits 1 if there is one. Run from anywhere; the repository is two
levels up."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")

# Lower number = lower layer. A module may import modules of lower layers.
LAYER = {"error": 1, "pg": 2, "settings": 3, "fdw": 4, "compat": 4, "queue": 4, "stats": 4}
# Surfaces may use surfaces later in this list (never earlier): an INSERT
# into a foreign table queues (fdw -> queue), enqueue takes and checks
# aws_lambda.invoke's arguments (queue -> compat), every caller counts
# (-> stats).
SURFACE_ORDER = ["fdw", "queue", "compat", "stats"]
TOP = {"lib", "pg_tests"}  # the crate root and the in-database tests


def top_module(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    return rel[0]


def allowed(src, dst):
    if src == dst or src in TOP:
        return True
    if dst not in LAYER:
        return False
    if LAYER[dst] < LAYER[src]:
        return True
    if LAYER[dst] == LAYER[src] == 4:
        return SURFACE_ORDER.index(dst) > SURFACE_ORDER.index(src)
    return False


def strip_tests(text):
    # Blank out `#[cfg(test)] mod x { ... }` (to its matching brace), keeping
    # line numbers.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out.append(re.sub(r"[^\n]", " ", text[m.start():j]))
        i = j
    out.append(text[i:])
    return "".join(out)


def expand(tree):
    """'a::{b, c::{d, e}}' -> ['a::b', 'a::c::d', 'a::c::e']"""
    m = re.match(r"^([\w:]*?)\{(.*)\}$", tree, re.S)
    if not m:
        return [tree]
    head, body, parts, depth, cur = m.group(1), m.group(2), [], 0, ""
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [head + q for p in parts if p.strip() for q in expand(p.strip())]


def module_path(path, src_root):
    rel = os.path.relpath(path, src_root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        return tuple(rel[:-1]), True
    return tuple(rel), False


def circles(src_root):
    """Circles between the files of one crate, as lists of paths."""
    files = {}
    for d, _, fs in os.walk(src_root):
        for f in fs:
            if f.endswith(".rs"):
                path = os.path.join(d, f)
                files[module_path(path, src_root)[0]] = path
    graph = {}
    for mod, path in files.items():
        text = re.sub(r"//[^\n]*", "", strip_tests(open(path).read()))
        named = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)::[^;]+);", text):
            named += expand(re.sub(r"\s+", "", m.group(1)))
        named += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
        deps = set()
        for n in named:
            parts = n.split("::")
            if parts[0] == "crate":
                base, rest = (), parts[1:]
            elif parts[0] == "self":
                base, rest = mod, parts[1:]
            else:
                base, rest = mod[:-1], parts[1:]
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
            target = base + tuple(p for p in rest if p and p != "self")
            for k in range(len(target), -1, -1):
                if target[:k] in files:
                    if files[target[:k]] != path and k > 0:
                        deps.add(files[target[:k]])
                    break
        graph[path] = deps
    # Tarjan's strongly connected components, iteratively.
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    group.append(w)
                    if w == node:
                        break
                if len(group) > 1:
                    out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    bad = []
    for d, _, files in os.walk(SRC):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            src = top_module(path)
            text = strip_tests(open(path).read())
            text = re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)
            for m in re.finditer(r"\buse\s+(crate::[^;]+);|\bcrate(?:::\w+)+", text):
                line = text.count("\n", 0, m.start()) + 1
                paths = expand(re.sub(r"\s+", "", m.group(1))) if m.group(1) else [m.group(0)]
                for p in paths:
                    parts = p.split("::")
                    if len(parts) < 2 or not parts[1]:
                        continue
                    dst = parts[1]
                    if not allowed(src, dst):
                        bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {src} -> {dst}")
    for b in sorted(set(bad)):
        print(b)
    print(f"imports pointing up: {len(set(bad))}")
    roots = [SRC] + sorted(
        os.path.join(ROOT, "crates", c, "src") for c in os.listdir(os.path.join(ROOT, "crates"))
    )
    found = [c for r in roots if os.path.isdir(r) for c in circles(r)]
    for c in found:
        print("circle: " + " <-> ".join(os.path.relpath(p, ROOT) for p in c))
    print(f"import circles: {len(found)}")
    return 1 if bad or found else 0


if __name__ == "__main__":
    sys.exit(main())
