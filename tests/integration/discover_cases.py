"""Lists the unittest classes of tests/integration/test_*.py for tests/CMakeLists.txt.

Prints one line per runnable class, "<file stem> <Class>", so CTest registers one test per
class and a failing CTest line names the class. The files are parsed (ast), never imported:
configure must not start servers or need a built binary. A class is listed when it derives from
unittest.TestCase and has a test_* method, its own or a base's or mixin's (bases are followed
into sibling files through `from module import Name`); bases with no tests (RecorderCase,
ApiTestCase) and mixins that are not TestCases are not listed. A file with no such class is listed as
"<file stem> -" and registered whole.
"""
import ast
import os
import sys


def parse(path):
    with open(path, encoding="utf-8") as source:
        return ast.parse(source.read(), filename=path)


def resolve(name, path, cache):
    """The ClassDef `name` means in `path`: defined there, or imported with `from module import
    name` from a sibling file; None for anything else (stdlib, unknown)."""
    if path not in cache:
        cache[path] = parse(path)
    tree = cache[path]
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, path
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            sibling = os.path.join(os.path.dirname(path), node.module + ".py")
            if any((alias.asname or alias.name) == name for alias in node.names) and os.path.exists(sibling):
                return resolve(name, sibling, cache)
    return None


def ancestry(node, path, cache, depth=0):
    """Yields `node` and every class it derives from that can be resolved; a base that cannot
    be resolved is yielded as its name (a string)."""
    yield node
    if depth > 20:
        return
    for base in node.bases:
        if isinstance(base, ast.Attribute):
            yield base.attr
            continue
        if not isinstance(base, ast.Name):
            continue
        found = resolve(base.id, path, cache)
        if found is None:
            yield base.id
        else:
            yield from ancestry(found[0], found[1], cache, depth + 1)


def runnable_classes(path):
    """Classes of `path` that derive from unittest.TestCase and have at least one test_* method
    (their own or inherited from a mixin or base the parser can follow)."""
    cache = {}
    tree = parse(path)
    cache[path] = tree
    names = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        line = list(ancestry(node, path, cache))
        is_case = "TestCase" in [item for item in line if isinstance(item, str)]
        has_tests = any(isinstance(item, ast.ClassDef) and any(
            isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name.startswith("test")
            for member in item.body) for item in line)
        if is_case and has_tests:
            names.append(node.name)
    return names


def main(paths):
    for path in sorted(paths):
        stem = os.path.splitext(os.path.basename(path))[0]
        names = runnable_classes(path)
        for name in names or ["-"]:
            print(f"{stem} {name}")


if __name__ == "__main__":
    main(sys.argv[1:])
