#!/usr/bin/python3
"""The layering rule of docs/architecture.md, checked on every #include "...".

Layers, lowest first; a file may include its own layer and lower ones only:
    protocol/      pure code: includes protocol/ only
    src/base/      leaf utilities and the configuration
    storage/       SQLite: protocol/, src/base/ and itself
    src/http/      HTTP server, parsers, backend client
    src/edge/      the lws thread and the seam
    src/core/      loop, connections, group commit, front door
    src/msg/       messaging: forwarding, pushes, routes, hooks, sessions, REST
    cluster/       the engine's LAN implementation
    src/main.c     wiring
Prints every violation as file:line and exits 1 if there is any.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["protocol/", "src/base/", "storage/", "src/http/", "src/edge/", "src/core/",
          "src/msg/", "cluster/", "src/main.c"]


def layer(path):
    for i, prefix in enumerate(LAYERS):
        if path == prefix or path.startswith(prefix):
            return i
    return None


def main():
    bad = []
    for f in sorted(ROOT.glob("**/*.[ch]")):
        rel = f.relative_to(ROOT).as_posix()
        own = layer(rel)
        if own is None or rel.startswith(("build", "tests/")):
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            inc = m.group(1)
            theirs = layer(inc)
            if theirs is None:
                bad.append("%s:%d: includes %s, which is in no layer" % (rel, n, inc))
            elif theirs > own:
                bad.append("%s:%d: %s includes %s (a higher layer: %s)" % (
                    rel, n, LAYERS[own], inc, LAYERS[theirs]))
    for b in bad:
        print(b)
    if bad:
        print("layering: %d violation(s); see docs/architecture.md" % len(bad))
        return 1
    print("layering: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
