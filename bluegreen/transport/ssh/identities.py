"""Identity files read once per run. Given file names, paramiko parses each file once per key
type it tries (RSA, then ECDSA, then Ed25519) on every connection: three parses per host for an
Ed25519 key. The first identity is loaded here once, by its own type, and handed to every
connection; the others, and a first one that cannot be loaded without help (a passphrase), are
left to paramiko, which tries them in the same order as before and reports their errors."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import paramiko

_loaded: dict[str, paramiko.PKey | None] = {}
_lock = threading.Lock()


def first_identity(paths: tuple[str, ...]) -> tuple[paramiko.PKey | None, list[str]]:
    """The first identity file's key, when it loads without a passphrase, and the files left
    for paramiko to try after it."""
    if not paths:
        return None, []
    key = _load(paths[0])
    return (key, list(paths[1:])) if key is not None else (None, list(paths))


def _load(path: str) -> paramiko.PKey | None:
    with _lock:
        if path not in _loaded:
            import paramiko

            try:
                _loaded[path] = paramiko.PKey.from_path(path)
            except Exception:  # encrypted, unreadable or of a type unknown here: paramiko tries
                _loaded[path] = None
        return _loaded[path]
