#!/usr/bin/env python3
"""Checks that every language binding declares every exported mg_* function
of libmedgemini with the header's parameter count.

Sources of truth:
  - the exported functions: `nm -D --defined-only lib/libmedgemini.so.0`
    (or --symbols FILE, one name a line);
  - their arity: the prototypes in include/medgemini.h.
What each binding declares:
  - python: `_fn("mg_name", restype, [argtypes...])` calls in
    bindings/python/medgemini/*.py (the length of the argtypes list);
  - go:     cgo call sites `C.mg_name(...)` in bindings/go/**/*.go, and calls
    `mg_name(...)` in cgo preambles and .c files there (every call site must
    have the right argument count);
  - rust:   `fn mg_name(...)` in the `extern "C" { }` blocks of
    bindings/rust/**/*.rs (the medgemini-sys crate; target/ is skipped).
A binding directory that does not exist is reported as skipped (unless
--require names it). Exit status: 0 when everything matches, 1 on drift,
2 on a usage or setup error.
"""
import argparse
import ast
import os
import re
import shutil
import subprocess
import sys

# ------------------------------------------------------------ C/Go/Rust text


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_c_comments(text, keep_strings=True):
    """Removes // and /* */ comments (keeping newlines), leaving string and
    character literals intact (or blanked when keep_strings is False)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j) or " ")
            i = j
        elif c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\" and c != "`":
                    j += 1
                elif text[j] == "\n" and c != "`":
                    break
                j += 1
            lit = text[i:j + 1]
            out.append(lit if keep_strings else c + " " * max(len(lit) - 2, 0) + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_args(text, start):
    """text[start] is '('. Returns (list of argument strings, index after the
    matching ')'). Commas count only outside nested (), [], {} and <> (the
    last only when angle=True is set by the caller through split_args_rust)."""
    return _split(text, start, angle=False)


def _split(text, start, angle):
    assert text[start] == "("
    depth, i, n = 0, start, len(text)
    args, cur = [], []
    opens, closes = "([{", ")]}"
    adepth = 0
    while i < n:
        c = text[i]
        if c in "\"'`":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\" and c != "`":
                    j += 1
                j += 1
            cur.append(text[i:j + 1])
            i = j + 1
            continue
        if c in opens:
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c in closes:
            depth -= 1
            if depth == 0:
                args.append("".join(cur))
                break
        elif angle and c == "<":
            adepth += 1
        elif angle and c == ">" and text[i - 1] != "-" and adepth:
            adepth -= 1
        elif c == "," and depth == 1 and adepth == 0:
            args.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    else:
        raise ValueError("unbalanced parentheses at offset %d" % start)
    args = [a.strip() for a in args]
    if args == [""]:
        args = []
    return args, i + 1


# ------------------------------------------------------------------ header

def header_prototypes(path):
    """{name: arity} of the mg_* functions declared in a C header."""
    text = strip_c_comments(_read(path), keep_strings=False)
    # drop preprocessor lines (with continuations)
    text = re.sub(r"(?m)^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", "", text)
    protos = {}
    # statements at brace depth 0 (extern "C" { is transparent)
    depth, stmt = 0, []
    stmts = []
    for c in text:
        if c == "{":
            if re.fullmatch(r'\s*extern\s*"\s*"\s*', "".join(stmt)):
                stmt = []
                continue
            depth += 1
        elif c == "}":
            if depth == 0:  # closing extern "C"
                stmt = []
                continue
            depth -= 1
        if c == ";" and depth == 0:
            stmts.append("".join(stmt))
            stmt = []
            continue
        stmt.append(c)
    for s in stmts:
        s = s.strip()
        if not s or s.startswith("typedef"):
            continue
        m = re.search(r"\b(mg_\w+)\s*\(", s)
        if not m:
            continue
        # the declarator name must be the first '(' at paren depth 0
        first = s.index("(")
        if first != m.end() - 1:
            continue
        args, _ = split_args(s, first)
        if len(args) == 1 and args[0] == "void":
            args = []
        if any(a == "..." for a in args):
            raise ValueError("%s: variadic functions cannot be bound" % m.group(1))
        protos[m.group(1)] = len(args)
    return protos


def exported_symbols(lib, symbols_file=None):
    if symbols_file:
        with open(symbols_file, encoding="utf-8") as f:
            return {l.strip() for l in f if l.strip().startswith("mg_")}
    nm = shutil.which("nm")
    if not nm:
        raise RuntimeError("nm not found (binutils); pass --symbols FILE")
    out = subprocess.run([nm, "-D", "--defined-only", lib], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TtWi" and parts[2].startswith("mg_"):
            names.add(parts[2].split("@")[0])
    return names


# ---------------------------------------------------------------- bindings

def python_decls(root):
    """{name: [arity, ...]} from _fn("mg_x", restype, [..]) calls."""
    decls = {}
    for dirpath, _, files in os.walk(root):
        if "tests" in dirpath.split(os.sep):
            continue
        for fn in sorted(files):
            if not fn.endswith(".py"):
                continue
            path = os.path.join(dirpath, fn)
            tree = ast.parse(_read(path), path)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "_fn" and node.args):
                    continue
                name = node.args[0]
                if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                    continue
                if len(node.args) < 3 or not isinstance(node.args[2], (ast.List, ast.Tuple)):
                    decls.setdefault(name.value, []).append(
                        ("%s:%d" % (path, node.lineno), None))
                    continue
                decls.setdefault(name.value, []).append(
                    ("%s:%d" % (path, node.lineno), len(node.args[2].elts)))
    return decls


def _line(text, off):
    return text.count("\n", 0, off) + 1


def _go_preambles(text):
    """(offset, text) of the comment blocks right before `import "C"`."""
    out = []
    for m in re.finditer(r'(?m)^import\s+"C"', text):
        end = m.start()
        block = text[:end].rstrip()
        if block.endswith("*/"):
            s = block.rfind("/*")
            out.append((s + 2, block[s + 2:-2]))
        else:
            lines = block.split("\n")
            k = len(lines)
            while k > 0 and lines[k - 1].lstrip().startswith("//"):
                k -= 1
            start = len("\n".join(lines[:k])) + (1 if k else 0)
            body = "\n".join(re.sub(r"^\s*//", "", l) for l in lines[k:])
            out.append((start, body))
    return out


def go_decls(root):
    decls = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("vendor", "testdata", ".git"))
        for fn in sorted(files):
            path = os.path.join(dirpath, fn)
            if fn.endswith(".go"):
                raw = _read(path)
                for off, pre in _go_preambles(raw):
                    _c_calls(pre, path, raw[:off].count("\n"), decls)
                text = strip_c_comments(raw, keep_strings=False)
                for m in re.finditer(r"\bC\.(mg_\w+)\s*\(", text):
                    args, _ = split_args(text, m.end() - 1)
                    decls.setdefault(m.group(1), []).append(
                        ("%s:%d" % (path, _line(text, m.start())), len(args)))
            elif fn.endswith((".c", ".h")):
                _c_calls(_read(path), path, 0, decls)
    return decls


def _c_calls(code, path, line0, decls):
    """Calls mg_x(...) in C code (not declarations: skipped when the name is
    preceded by a type, i.e. the previous token is an identifier or '*')."""
    code = strip_c_comments(code, keep_strings=False)
    for m in re.finditer(r"(?<![\w.])(mg_\w+)\s*\(", code):
        before = code[:m.start()].rstrip()
        prev = re.search(r"([\w*]+)$", before)
        if prev and prev.group(1) not in ("return", "case") and \
                (prev.group(1).endswith("*") or re.match(r"\w", prev.group(1))):
            continue  # a declaration or definition: `mg_status mg_x(`
        args, _ = split_args(code, m.end() - 1)
        if len(args) == 1 and args[0] == "void":
            args = []
        decls.setdefault(m.group(1), []).append(
            ("%s:%d" % (path, line0 + _line(code, m.start())), len(args)))


def rust_decls(root):
    decls = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("target", ".git"))
        for fn in sorted(files):
            if not fn.endswith(".rs"):
                continue
            path = os.path.join(dirpath, fn)
            text = strip_c_comments(_read(path))
            for block in re.finditer(r'extern\s+"C"\s*\{', text):
                # find the matching brace of the extern block
                depth, i = 0, block.end() - 1
                while i < len(text):
                    if text[i] == "{":
                        depth += 1
                    elif text[i] == "}":
                        depth -= 1
                        if depth == 0:
                            break
                    i += 1
                body_start = block.end()
                body = text[body_start:i]
                for m in re.finditer(r"\bfn\s+(mg_\w+)\s*\(", body):
                    args, _ = _split(body, m.end() - 1, angle=True)
                    decls.setdefault(m.group(1), []).append(
                        ("%s:%d" % (path, _line(text, body_start + m.start())), len(args)))
    return decls


BINDINGS = {
    "python": ("bindings/python/medgemini", python_decls),
    "go": ("bindings/go", go_decls),
    "rust": ("bindings/rust", rust_decls),
}


def check(root, lib=None, header=None, symbols_file=None, require=(), only=None,
          out=sys.stdout):
    """Returns the number of problems found (printing them)."""
    header = header or os.path.join(root, "include", "medgemini.h")
    lib = lib or os.path.join(root, "lib", "libmedgemini.so.0")
    protos = header_prototypes(header)
    if not protos:
        raise ValueError("%s: no mg_* prototypes found" % header)
    exported = exported_symbols(lib, symbols_file)
    problems = 0

    def bad(msg):
        nonlocal problems
        problems += 1
        print("  FAIL " + msg, file=out)

    print("library: %d exported mg_* functions; header: %d prototypes"
          % (len(exported), len(protos)), file=out)
    for name in sorted(exported - set(protos)):
        bad("%s is exported but has no prototype in the header" % name)
    for name in sorted(set(protos) - exported):
        bad("%s is declared in the header but not exported" % name)
    wanted = {n: protos[n] for n in exported if n in protos}
    for lang, (rel, fn) in BINDINGS.items():
        if only and lang not in only:
            continue
        path = os.path.join(root, rel)
        if not os.path.isdir(path):
            if lang in require:
                bad("%s: %s does not exist" % (lang, rel))
            else:
                print("%s: skipped (%s does not exist)" % (lang, rel), file=out)
            continue
        before = problems
        decls = fn(path)
        print("%s: %d functions declared" % (lang, len(decls)), file=out)
        for name in sorted(wanted):
            if name not in decls:
                bad("%s: %s is not bound" % (lang, name))
                continue
            for where, arity in decls[name]:
                if arity is None:
                    bad("%s: %s at %s: argtypes is not a literal list" % (lang, name, where))
                elif arity != wanted[name]:
                    bad("%s: %s at %s has %d parameters, the header %d"
                        % (lang, name, where, arity, wanted[name]))
        for name in sorted(set(decls) - set(wanted)):
            where = decls[name][0][0]
            bad("%s: %s at %s is not exported by the library" % (lang, name, where))
        if problems == before:
            print("%s: ok" % lang, file=out)
    return problems


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.dirname(here), help="repository root")
    ap.add_argument("--lib", help="shared library (default ROOT/lib/libmedgemini.so.0)")
    ap.add_argument("--header", help="header (default ROOT/include/medgemini.h)")
    ap.add_argument("--symbols", help="file of exported names instead of running nm")
    ap.add_argument("--require", default="", help="comma list of bindings that must exist")
    ap.add_argument("--only", default="", help="comma list of bindings to check")
    a = ap.parse_args(argv)
    split = (lambda s: [x for x in s.split(",") if x])
    for lang in split(a.require) + split(a.only):
        if lang not in BINDINGS:
            ap.error("unknown binding %r" % lang)
    try:
        n = check(a.root, a.lib, a.header, a.symbols, split(a.require), split(a.only))
    except (OSError, RuntimeError, ValueError, subprocess.CalledProcessError) as exc:
        print("check_drift: %s" % exc, file=sys.stderr)
        return 2
    print("drift check: %s" % ("%d problem(s)" % n if n else "ok"))
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
