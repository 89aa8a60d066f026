"""Verify one tag object's signature the way ``git verify-tag`` does with gpg.format=ssh
(git's gpg-interface.c): ssh-keygen -Y find-principals, then -Y verify per principal, or
-Y check-novalidate to name an unknown key. Never raises: every outcome is a Signature."""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from typing import Optional

from .model import Signature
from .refname import printable

# git's armour lines by format; the last line starting one begins the signature
ARMOURS = ((b"-----BEGIN SSH SIGNATURE-----", "ssh"),
           (b"-----BEGIN PGP SIGNATURE-----", "openpgp"),
           (b"-----BEGIN PGP MESSAGE-----", "openpgp"),
           (b"-----BEGIN SIGNED MESSAGE-----", "x509"))
_GOOD = re.compile(r'Good "git" signature (?:for (.*) )?with (\S+) key (\S+)')
_DATE = re.compile(rb"[ \t\r\n]*([0-9]+)[ \t\r\n]*[+-][0-9]")  # after the ident's last ">"
_QUIET = ("Could not verify signature.", "No principal matched.", "sig_find_principals:")


def split_tag(raw: bytes) -> tuple[bytes, Optional[bytes], Optional[str]]:
    """(signed payload, armoured signature or None, its format or None), as git's
    parse_signature: the payload also loses a gpgsig header (the other hash's signature)."""
    start, kind, pos = None, None, 0
    while pos < len(raw):
        for armour, name in ARMOURS:
            if raw.startswith(armour, pos):
                start, kind = pos, name
        nl = raw.find(b"\n", pos)
        pos = len(raw) if nl < 0 else nl + 1
    if start is None:
        return raw, None, None
    return _remove_gpgsig(raw[:start]), raw[start:], kind


def _remove_gpgsig(payload: bytes) -> bytes:
    # git 2.39's remove_signature: only the last gpgsig/gpgsig-sha256 header block goes
    start = end = None
    inside, pos = False, 0
    while pos < len(payload):
        nl = payload.find(b"\n", pos)
        nxt = len(payload) if nl < 0 else nl + 1
        if inside and payload.startswith(b" ", pos):
            end = nxt
        elif payload.startswith(b"gpgsig", pos):
            if payload.startswith((b"gpgsig ", b"gpgsig-sha256 "), pos):
                start, end, inside = pos, nxt, True
        elif payload.startswith(b"\n", pos):
            break  # end of the header
        else:
            inside = False
        pos = nxt
    return payload if start is None else payload[:start] + payload[end:]


def _tagger_time(payload: bytes) -> Optional[int]:
    """Epoch seconds of the tagger line, 0 when it has no date; None when git would refuse
    to verify (no tagger line, or no <email> in it)."""
    for line in payload.split(b"\0", 1)[0].split(b"\n"):
        if not line:
            break  # end of the header
        if line.startswith(b"tagger "):  # the first one counts, as in git
            ident = line[7:]
            lt = ident.find(b"<")
            if lt < 0 or ident.find(b">", lt) < 0:
                return None
            m = _DATE.match(ident, ident.rfind(b">") + 1)
            return int(m.group(1)) if m else 0
    return None


def verify_tag(raw: bytes, allowed_signers: str, revoked: Optional[str] = None,
               timeout: float = 10.0) -> Signature:
    try:
        return _verify(raw, allowed_signers, revoked, time.monotonic() + timeout)
    except subprocess.TimeoutExpired:
        return Signature("error", detail=f"ssh-keygen took longer than {timeout:g}s")
    except FileNotFoundError:
        return Signature("error", detail="ssh-keygen (OpenSSH 8.2p1+) is not installed")
    except Exception as exc:  # fail closed: whatever went wrong, it is not "good"
        return Signature("error", detail=printable(f"could not check the signature: {exc}"))


def _verify(raw: bytes, allowed: str, revoked: Optional[str], deadline: float) -> Signature:
    payload, sig, kind = split_tag(bytes(raw))
    if sig is None:
        return Signature("unsigned", detail="the tag object carries no signature")
    if kind != "ssh":
        return Signature("unsupported", detail=f"an {'OpenPGP' if kind == 'openpgp' else 'X.509'}"
                         " signature; only SSH signatures (gpg.format=ssh) are verified here")
    for path, what in ((allowed, "allowed-signers"), (revoked, "revoked-keys")):
        # stricter than git, which skips a missing revocation file with a warning
        if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            return Signature("error", detail=f"the server's {what} file is missing or unreadable")
    when = _tagger_time(payload)
    if when is None:
        return Signature("invalid", detail="no tagger line with an <email>: git verify-tag "
                                           "refuses such a tag")
    try:  # git formats the tagger time in the verifier's local timezone, as ssh-keygen reads it
        at = [f"-Overify-time={time.strftime('%Y%m%d%H%M%S', time.localtime(when))}"] \
            if when else []
    except (OverflowError, OSError, ValueError):
        return Signature("invalid", detail="the tagger date is out of range")
    allowed, revoke = os.path.abspath(allowed), ("-r", os.path.abspath(revoked)) if revoked else ()
    with tempfile.TemporaryDirectory(prefix="tagwarden-sig-") as tmp:
        home = os.path.join(tmp, "home")
        os.mkdir(home)  # empty: no ~/.ssh, and no agent reaches us through the environment
        with open(os.path.join(tmp, "tag.sig"), "wb") as f:
            f.write(sig)
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": home}
        if "TZ" in os.environ:  # -Overify-time and valid-before are local times
            env["TZ"] = os.environ["TZ"]

        def keygen(*args, stdin: bytes = b"", extra=()) -> tuple[int, str, str]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("ssh-keygen", 0)
            out = subprocess.run(["ssh-keygen", "-Y", *args, "-s", "tag.sig", *at, *extra],
                                 input=stdin, capture_output=True, env=env, cwd=tmp,
                                 timeout=left, check=False)
            return (out.returncode, out.stdout.decode("utf-8", "surrogateescape"),
                    out.stderr.decode("utf-8", "surrogateescape"))

        rc, found, err = keygen("find-principals", "-f", allowed)
        if rc and "usage:" in err:
            return Signature("error", detail="ssh-keygen is too old (needs OpenSSH 8.2p1+)")
        principals = [] if rc else [p.rstrip("\r") for p in found.split("\n") if p.rstrip("\r")]
        why = ""
        for who in principals:  # git tries each principal until one verifies
            rc, out, err = keygen("verify", "-n", "git", "-f", allowed, "-I", who,
                                  stdin=payload, extra=revoke)
            m = _GOOD.match(out) if rc == 0 else None
            if m and m.group(1) is not None:
                who, key = printable(who), printable(f"{m.group(2)} {m.group(3)}")
                return Signature("good", who, key, f"signed by {who} ({key})")
            why = _reason(err) or why
            if revoke and not why and keygen("verify", "-n", "git", "-f", allowed, "-I", who,
                                             stdin=payload)[0] == 0:
                why = "the key is revoked"  # ssh-keygen fails a revoked key silently
        if principals:
            return Signature("invalid", detail=printable(
                f"checked as {', '.join(principals)}: {why or 'ssh-keygen -Y verify failed'}"))
        expired = _reason(err) if re.search(r"has expired|not yet valid", err) else ""
        rc, out, err = keygen("check-novalidate", "-n", "git", stdin=payload)
        m = _GOOD.match(out) if rc == 0 else None
        if not m:  # git still fails here; check-novalidate only names the key
            return Signature("invalid", detail=printable(
                f"not a valid SSH signature of this tag (namespace git): "
                f"{_reason(err) or 'ssh-keygen -Y check-novalidate failed'}"))
        key = printable(f"{m.group(2)} {m.group(3)}")
        if expired:  # find-principals skipped a listed key outside its validity
            return Signature("invalid", key=key, detail=printable(
                f"key {key} is allowed, but not at the tagger date: {expired}"))
        return Signature("untrusted", key=key,
                         detail=f"key {key} is not in the server's allowed signers")


def _reason(err: str) -> str:
    """ssh-keygen's first telling stderr line, without the allowed-signers path:line."""
    for line in err.splitlines():
        if line.strip() and not line.startswith(_QUIET):
            return re.sub(r"^.*?:\d+: ", "", line.strip())[:200]
    return ""
