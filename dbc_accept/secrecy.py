"""What a secret is, and the two ways the suite renders text that may hold one.

The single definition used by the snapshot writer, the report, the dbc facts, the SSH guest
and the guest fixture:

- :func:`secret_name`: a key, flag or variable name whose value is a secret (``password``,
  ``pass``, ``passwd``, ``secret``, ``token``, ``credentials``, ``api_key``/``apikey``,
  ``auth_key``, ``key``, ``priv_key``, ``private_key``, ``-p``, ``--wallet-pass``...).
- :func:`node_dat_secrets`: every value of a node.dat but ``node_id`` and ``pub_key``
  (a line without ``=`` counts whole: a bare key).
- Snapshots (:func:`snapshot_text`, :func:`snapshot_argv`): an allow-list per captured file
  keeps only the keys and lines the checks read; anything else becomes an empty line (line
  numbers stay). A value that must stay comparable (a node.dat private key) becomes
  ``hmac-sha256:<hex>``, keyed with a random key of that snapshot (:func:`new_key`).
- Reports (:func:`mask_text`): the run's known secret values and every secret-named value
  become ``***``, and so does the password of a URL (``ssh://root:***@host``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence

MASK = "***"
HMAC_PREFIX = "hmac-sha256:"
SHA256_PREFIX = "redacted:sha256:"  # older snapshots: an unsalted sha256 (read, never written)
MIN_SECRET = 4  # a shorter value would erase ordinary text; arguments mask any length
# A line of node.dat or core.conf that is not key=value: kept as this, so a replay fails to
# parse it as the node did, without the line itself.
WITHHELD = "line-withheld-not-key-value"
NODE_DAT_PUBLIC = ("node_id", "pub_key")
NODE_DAT_PRIVATE = ("node_private_key", "priv_key")

_WORDS = {"pass", "password", "passwd", "passphrase", "pwd", "secret", "secrets", "token",
          "tokens", "credential", "credentials", "apikey", "key", "privkey", "priv", "psk"}
_JOINED = ("password", "passwd", "passphrase", "secret", "token", "credential", "apikey",
           "authkey", "privatekey", "privkey")


def secret_name(name: str) -> bool:
    """True when ``name`` (a key, ``--flag``, ``-p`` or variable) names a secret value."""
    bare = name.strip().strip("\"'").lstrip("-#; ").lower()
    if name.strip() == "-p":
        return True
    parts = [p for p in re.split(r"[_.\-]", bare) if p]
    return any(p in _WORDS for p in parts) or any(j in bare.replace("_", "").replace(
        "-", "").replace(".", "") for j in _JOINED)


# --- node.dat ------------------------------------------------------------------------------

def node_dat_secrets(text: str) -> list[str]:
    """Every private value of a node.dat: all but node_id and pub_key, bare lines whole."""
    found = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = line.partition("=")
        if not eq:
            found.append(line)
        elif key.strip() not in NODE_DAT_PUBLIC and value.strip():
            found.append(value.strip())
    return found


# Secrets met during this run (node.dat values read by any route, passwords given): every
# report writer masks them. A process-wide set, so that a read anywhere (a gatherer, the
# snapshot writer) is known before anything is written.
_KNOWN: set[str] = set()


def register(value: str | None) -> None:
    """Make ``value`` a secret no artifact of this run may contain."""
    if value and len(value.strip()) >= MIN_SECRET:
        _KNOWN.add(value.strip())


def register_node_dat(text: str) -> None:
    """Register every private value of a node.dat's text."""
    for value in node_dat_secrets(text):
        register(value)


def known_secrets() -> list[str]:
    """The registered secrets, the longest first (so none is half-replaced)."""
    return sorted(_KNOWN, key=len, reverse=True)


def hmac_digest(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def new_key() -> bytes:
    """A random key for one snapshot's keyed hashes (stored in its snapshot.json)."""
    return os.urandom(32)


# --- the snapshot renderer -----------------------------------------------------------------

def _config_lines(text: str, keep: Iterable[str] | None, key: bytes,
                  private: Sequence[str] = ()) -> str:
    """A key=value file: allowed keys kept, ``private`` keyed-hashed, other lines emptied."""
    allowed = set(keep or ())
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        name, eq, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not line or (line.startswith("[") and line.endswith("]")):
            out.append(line)
        elif not eq or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            out.append(WITHHELD)
        elif name in private and value:
            out.append(f"{name}={HMAC_PREFIX}{hmac_digest(key, value)}")
        elif name in allowed or (keep is None and name.endswith("_port")):
            out.append(f"{name}={value}")
        else:
            out.append("")
    return "\n".join(out) + "\n"


def _node_dat(text: str, key: bytes) -> str:
    return _config_lines(text, NODE_DAT_PUBLIC, key, NODE_DAT_PRIVATE)


CORE_CONF_KEYS = ("net_type", "dbc_monitor_server", "miner_monitor_server")


def _core_conf(text: str, key: bytes) -> str:
    allowed = set(CORE_CONF_KEYS)
    for raw in text.splitlines():  # every *_port is read (ports in use, clashes)
        name = raw.split("#", 1)[0].partition("=")[0].strip()
        if name.endswith("_port"):
            allowed.add(name)
    return _config_lines(text, allowed, key)


def _lines(text: str, keep: re.Pattern[str]) -> str:
    """Lines matching ``keep`` kept, every other line emptied."""
    out = [ln if keep.match(ln) and not _secret_in_line(ln) else "" for ln in text.split("\n")]
    return "\n".join(out)


_SAFE_MOUNT_KEYS = {"uid", "gid", "umask", "dmask", "fmask", "mode", "size", "vers", "sec",
                    "prjquota", "pquota", "errors", "commit", "data", "x-systemd.device-timeout"}


def _fstab(text: str, key: bytes) -> str:
    out = []
    for raw in text.split("\n"):
        fields = raw.split()
        if len(fields) < 3 or raw.lstrip().startswith("#"):
            out.append("")
            continue
        device = re.sub(r"://[^/@\s]*@", "://", fields[0])  # no user:password@ of a URL
        if len(fields) > 3:
            fields[3] = ",".join(o for o in fields[3].split(",")
                                 if "=" not in o or o.split("=", 1)[0] in _SAFE_MOUNT_KEYS)
        out.append(" ".join([device, *fields[1:]]))
    return "\n".join(out)


_ROLE_FLAGS = {"--compute", "--client", "--seed", "--baremetal", "-d", "-a"}


def _cmdline(text: str, key: bytes) -> str:
    """A process's argv: the program and its bare flags; every value dropped."""
    words = text.split("\0")
    kept = words[:1] + [w for w in words[1:] if w in _ROLE_FLAGS or (
        re.fullmatch(r"--?[A-Za-z][A-Za-z0-9-]*", w) and not secret_name(w))]
    return "\0".join(kept) + ("\0" if text.endswith("\0") else "")


_RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r".*/dat/node\.dat$"), _node_dat),
    (re.compile(r".*/conf/core\.conf$"), _core_conf),
    (re.compile(r"/etc/fstab$"), _fstab),
    (re.compile(r"/proc/\d+/cmdline$"), _cmdline),
    (re.compile(r"/(etc|usr/lib|lib|run)/sysctl\.(conf|d/[^/]+)$"),
     re.compile(r"\s*-?[A-Za-z0-9_*/-]+[./][A-Za-z0-9_.*/-]+\s*=\s*[^\s#;]*\s*$")),
    (re.compile(r"/(etc|usr/lib|lib|run)/modprobe\.d/[^/]+$"),
     re.compile(r"\s*(blacklist|options)\s")),
    (re.compile(r"/(etc/modules|(etc|usr/lib|lib|run)/modules-load\.d/[^/]+)$"),
     re.compile(r"\s*[A-Za-z0-9_-]+\s*$")),
    (re.compile(r"/etc/default/grub(\.d/[^/]+)?$"),
     re.compile(r"\s*(export\s+)?GRUB_CMDLINE_LINUX(_DEFAULT)?=")),
    (re.compile(r"/etc/libvirt/libvirtd\.conf$"),
     re.compile(r"\s*(listen_tls|listen_tcp|listen_addr|auth_tcp|auth_tls|tcp_port|tls_port"
                r"|auth_unix_ro|auth_unix_rw)\s*=")),
    (re.compile(r"/etc/default/libvirtd$"),
     re.compile(r"\s*(export\s+)?(libvirtd_opts|LIBVIRT_ARGS|LIBVIRTD_ARGS)=")),
]


def snapshot_text(path: str, text: str, key: bytes) -> str:
    """What a snapshot keeps of the file ``path``: its allow-list, else :func:`scrub_lines`."""
    for pattern, rule in _RULES:
        if pattern.match(path):
            if isinstance(rule, re.Pattern):
                return _lines(text, rule)
            return rule(text, key)  # type: ignore[operator,no-any-return]
    return scrub_lines(text)


# A secret inside a line: key=value / key: value / "key": "value" / --flag value / URL
_ASSIGN = re.compile(r"""(?P<key>["']?[A-Za-z0-9_.-]+["']?)\s*[=:]\s*(?P<value>["']?[^\s"',;}]+)""")
_FLAG = re.compile(r"(?:^|\s)(?P<key>--?[A-Za-z][A-Za-z0-9_.-]*)\s+(?P<value>[^\s-]\S*)")
_URL_CREDS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<pw>[^@\s/]*)@")
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
                  re.S)
_HARMLESS = {"none", "null", "true", "false", "never", "given", "set", "0", "1", MASK,
             "[redacted]", "''", '""'}


def _secret_in_line(line: str) -> bool:
    for m in (*_ASSIGN.finditer(line), *_FLAG.finditer(line)):
        if secret_name(m["key"]) and m["value"].strip("\"'").lower() not in _HARMLESS:
            return True
    return bool(_URL_CREDS.search(line)) or "PRIVATE KEY-----" in line


def scrub_lines(text: str) -> str:
    """Any text: a line (or NUL-separated word) holding a secret is emptied, the value after
    a secret flag (``--password X``, ``-p X``) too."""
    if "\0" in text:
        return "\0".join(snapshot_argv(text.split("\0")))
    text = PEM.sub("", text)
    return "\n".join("" if _secret_in_line(ln) else ln for ln in text.split("\n"))


def snapshot_argv(argv: Sequence[str], inline: bool = True) -> list[str]:
    """A command line as a snapshot keeps it: secret values (``--key=X``, ``--key X``) empty,
    and with ``inline`` any word holding a secret inside (a script, ``a=b pass=c``) too."""
    out: list[str] = []
    secret_next = False
    for word in argv:
        if secret_next and word and not word.startswith("-"):
            out.append("")
            secret_next = False
            continue
        name, eq, _ = word.partition("=")
        secret_next = not eq and word.startswith("-") and secret_name(word)
        if eq and secret_name(name):
            out.append(f"{name}=")
        elif inline and not secret_next and _secret_in_line(word):
            out.append("")
        else:
            out.append(word)
    return out


def url_password_error(option: str, spec: str | None) -> str | None:
    """One line refusing a password inside ``--hosts``-style URLs, naming the safer forms."""
    import urllib.parse

    for part in (p.strip() for p in (spec or "").split(",")):
        try:
            password = urllib.parse.urlsplit(part).password if "://" in part else None
        except ValueError:
            password = None
        if password is not None:
            return (f"{option} {mask_url(part)}: a password in the URL is refused (it would "
                    "show in the process list through sshpass and in saved arguments); log "
                    "in with a key instead: --ssh-identity-file PATH, an ssh-agent, or "
                    "--ssh-config with IdentityFile")
    return None


def paramiko_host_key_warning(spec: str | None) -> str | None:
    """What ``--hosts paramiko://`` means for host keys (testinfra accepts unknown ones)."""
    if not any(p.strip().startswith("paramiko://") for p in (spec or "").split(",")):
        return None
    return ("--hosts paramiko://: testinfra's paramiko backend accepts a host key it does not "
            "know (it only warns), so another machine could answer; prefer ssh://, which uses "
            "OpenSSH and refuses a key not in ~/.ssh/known_hosts")


# --- the report renderer -------------------------------------------------------------------

def mask_values(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with each of ``secrets`` (any length) replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_url(text: str) -> str:
    """``scheme://user:PASSWORD@host`` -> ``scheme://user:***@host``."""
    return _URL_CREDS.sub(lambda m: f"{m['head']}:{MASK}@", text)


_QUOTE = r"(?:\\?(?:[\"']|&(?:amp;)?(?:quot|#34|#x27|#39);))?"
_KEYVAL = re.compile(rf"(?P<key>[A-Za-z0-9_.-]+)(?P<sep>{_QUOTE}\s*[=:]\s*{_QUOTE})"
                     r"(?P<value>[^\s\"'<>&\\,;]+)")


def mask_keyvals(text: str) -> str:
    """Every secret-named value (``password=x``, ``"token": "x"``, ``--pass=x``) -> ``***``."""
    def one(m: re.Match[str]) -> str:
        if not secret_name(m["key"]) or m["value"].lower() in _HARMLESS:
            return m[0]
        return f"{m['key']}{m['sep']}{MASK}"

    def flag(m: re.Match[str]) -> str:
        name = m["key"]
        if not secret_name(name) or name.endswith(("-file", "-env")) or m["value"].startswith(
                "(") or m["value"].lower() in _HARMLESS:
            return m[0]
        return m[0][: m.start("value") - m.start()] + MASK

    return _FLAG.sub(flag, _KEYVAL.sub(one, PEM.sub("[private key]", text)))


def mask_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """Arguments as a report shows them: URL passwords, secret flags' values and known
    secrets masked (``--vm-password X`` -> ``--vm-password ***``)."""
    known = sorted({s for s in secrets if s}, key=len, reverse=True)
    out: list[str] = []
    secret_next = False
    for word in argv:
        if secret_next:
            out.append(MASK)
            secret_next = False
            continue
        name, eq, _ = word.partition("=")
        secret_next = not eq and word.startswith("-") and secret_name(word) and not (
            word.endswith("-file") or word.endswith("-env"))
        if eq and word.startswith("-") and secret_name(name) and not name.endswith("-file"):
            word = f"{name}={MASK}"
        word = mask_keyvals(mask_url(word))
        for s in known:
            word = word.replace(s, MASK)
        out.append(word)
    return out
