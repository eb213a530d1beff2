"""Read a declared set of a node's files, links, folders and command outputs in one command.

:data:`READER` runs on the node as ``python3 -c READER REQUEST`` (the node's own python3,
3.6 or later, standard library only). The request names

- ``files``: paths read as text, as :class:`~dbc_accept.target.LocalTarget` reads them;
- ``links``: paths whose link target is read;
- ``lists``: folders listed;
- ``under``: ``[folder, pattern]``: the folder is listed and every entry whose name matches
  the regular expression is read (``/etc/sysctl.d`` and its ``*.conf``);
- ``each``: ``[folder, pattern, first, value, files, links]``: the folder is listed, and for
  every entry whose name matches, the file ``first`` below it is read; when it holds
  ``value`` (or ``first`` is empty) the named files and links below the entry are read too
  (``/proc``: ``comm``, then ``cmdline`` and ``exe`` of the dbc processes only;
  ``/sys/bus/pci/devices``: ``vendor``, ``driver``, ...). One command scans every process
  however many there are, and reads no other process's command line;
- ``walk``: paths whose every component is read as a link, following the links met as
  :meth:`dbc_accept.recording.RecordingTarget.physical` does (to place a snapshot's paths);
- ``cmds``: ``[argv, timeout]`` pairs, run concurrently under ``LC_ALL=C`` without a shell.

Every answer is kept with its outcome: the value, or the ``errno`` and message of the error
the reading raised, so that a missing file reads as missing from the answer without asking
the node again. The reply is JSON, zlib-compressed and base64-encoded on one line.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

# Runs on the node: Python 3.6+, standard library only, no f-strings needing 3.8.
READER = r'''
import base64, json, os, re, subprocess, sys, threading, zlib
req = json.loads(sys.argv[1])
out = {"files": {}, "links": {}, "lists": {}, "cmds": []}
def err(exc):
    return [False, exc.errno or 0, exc.strerror or str(exc)]
def read(path):
    if path in out["files"]:
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            out["files"][path] = [True, fh.read()]
    except OSError as exc:
        out["files"][path] = err(exc)
def link(path):
    try:
        out["links"][path] = [True, os.readlink(path)]
    except OSError as exc:
        out["links"][path] = err(exc)
def listing(path):
    try:
        names = sorted(os.listdir(path))
        out["lists"][path] = [True, names]
        return names
    except OSError as exc:
        out["lists"][path] = err(exc)
        return []
for path in req.get("files", []):
    read(path)
for path in req.get("links", []):
    link(path)
for path in req.get("lists", []):
    listing(path)
for folder, pattern in req.get("under", []):
    for name in listing(folder):
        if re.match(pattern, name):
            read(folder + "/" + name)
for folder, pattern, first, value, files, links in req.get("each", []):
    for name in listing(folder):
        if not re.match(pattern, name):
            continue
        base = folder + "/" + name + "/"
        if first:
            read(base + first)
            got = out["files"][base + first]
            if not got[0] or got[1].strip() != value:
                continue
        for f in files:
            read(base + f)
        for f in links:
            link(base + f)
def walk(path, hops):
    resolved = "/"
    for part in [p for p in path.split("/") if p]:
        here = os.path.join(resolved, part)
        if part == "..":
            resolved = os.path.dirname(resolved) or "/"
            continue
        if part == ".":
            continue
        if here not in out["links"]:
            link(here)
        got = out["links"][here]
        if hops >= 40 or not got[0]:
            resolved = here
            continue
        hops += 1
        resolved = walk(os.path.normpath(os.path.join(resolved, got[1])), hops)
    return resolved
for path in req.get("walk", []):
    walk(path, 0)
env = dict(os.environ, LC_ALL="C", LANG="C")
def run(i, argv, timeout):
    args = list(argv)
    if args and args[0] == "python3":
        args[0] = sys.executable
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=env)
        res = [p.returncode, p.stdout.decode("utf-8", "replace"),
               p.stderr.decode("utf-8", "replace")]
    except FileNotFoundError:
        res = [127, "", "%s: not found" % argv[0]]
    except PermissionError as exc:
        res = [126, "", str(exc)]
    except subprocess.TimeoutExpired:
        res = [124, "", "timed out after %g s" % timeout]
    out["cmds"][i] = res
cmds = req.get("cmds", [])
out["cmds"] = [None] * len(cmds)
threads = [threading.Thread(target=run, args=(i, a, t)) for i, (a, t) in enumerate(cmds)]
for t in threads:
    t.start()
for t in threads:
    t.join()
blob = zlib.compress(json.dumps(out).encode("utf-8"), 6)
sys.stdout.write(base64.b64encode(blob).decode("ascii") + "\n")
'''


def encode_request(request: dict[str, Any]) -> str:
    """The request as the one argument READER takes."""
    return json.dumps(request, separators=(",", ":"), sort_keys=True)


def decode_reply(stdout: str) -> dict[str, Any]:
    """READER's reply; ValueError when it is not one (a broken or foreign python3)."""
    try:
        doc = json.loads(zlib.decompress(base64.b64decode(stdout.strip())).decode("utf-8"))
    except (ValueError, zlib.error) as exc:
        raise ValueError(f"not the reader's reply: {exc}") from None
    if not isinstance(doc, dict) or not all(k in doc for k in ("files", "links", "lists", "cmds")):
        raise ValueError("not the reader's reply: keys missing")
    return doc
