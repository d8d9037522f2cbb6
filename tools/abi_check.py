#!/usr/bin/python3
"""abi_check.py BASELINE.abi CURRENT.abi CHANGELOG.md - compares the library's
ABI (abidw dumps, abigail-tools) with the committed baseline in abi/.

Fails (exit 1) on an incompatible change (a function or variable removed or
changed in an incompatible way, per abidiff) unless the [Unreleased] section
of CHANGELOG.md has an "### ABI" subsection naming every such symbol, and on
any abidiff error. Compatible changes (added functions, a struct grown at its
end) are listed; refresh the baseline with `make abi-dump` when releasing."""
import re
import subprocess
import sys


def unreleased_abi(changelog):
    text = open(changelog, encoding="utf-8").read()
    m = re.search(r"^## \[Unreleased\](.*?)(?=^## \[|\Z)", text, re.S | re.M)
    if not m:
        return ""
    a = re.search(r"^### ABI\n(.*?)(?=^### |\Z)", m.group(1), re.S | re.M)
    return a.group(1) if a else ""


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    base, cur, changelog = sys.argv[1:]
    r = subprocess.run(["abidiff", "--no-show-locs", base, cur], capture_output=True, text=True)
    report = r.stdout + r.stderr
    if r.returncode & 3:
        print(report)
        sys.exit("abi-check: abidiff failed (status %d)" % r.returncode)
    if r.returncode == 0:
        print("abi-check: the ABI matches abi/ (no change)")
        return
    print(report.rstrip())
    if not r.returncode & 8:
        print("abi-check: compatible changes only (refresh abi/ with `make abi-dump` at release)")
        return
    # incompatible: every removed or changed symbol must be announced
    syms = set(re.findall(r"^\s*\[[DC]\] '[^']*'\s*\{([A-Za-z_][A-Za-z0-9_]*)", report, re.M))
    syms |= set(re.findall(r"^\s*\[[DC]\] '(?:function|variable) [^']*?\b(mg_[a-z0-9_]+)\(",
                           report, re.M))
    notes = unreleased_abi(changelog)
    missing = sorted(s for s in syms if s not in notes)
    if not syms or missing:
        sys.exit("abi-check: incompatible ABI change not announced in CHANGELOG.md "
                 "([Unreleased] ### ABI must name %s)" % (", ".join(missing) or "the change"))
    print("abi-check: incompatible changes, announced in CHANGELOG.md: " + ", ".join(sorted(syms)))


if __name__ == "__main__":
    main()
