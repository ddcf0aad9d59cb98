from __future__ import annotations

import subprocess
from pathlib import Path

from bluegreen.transport.ssh.identities import first_identity


def _keygen(path: Path, passphrase: str = "") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return str(path)


def test_the_first_identity_is_read_once_and_the_others_are_left_in_order(tmp_path: Path
                                                                         ) -> None:
    first, second = _keygen(tmp_path / "first"), _keygen(tmp_path / "second")
    key, rest = first_identity((first, second))
    assert key is not None and key.get_name() == "ssh-ed25519" and rest == [second]
    public = (tmp_path / "first.pub").read_text().split()[1]
    assert key.get_base64() == public
    again, _ = first_identity((first, second))
    assert again is key  # not read again for the next host


def test_an_identity_that_needs_a_passphrase_is_left_to_paramiko(tmp_path: Path) -> None:
    locked = _keygen(tmp_path / "locked", passphrase="correct horse")
    other = _keygen(tmp_path / "other")
    assert first_identity((locked, other)) == (None, [locked, other])
    assert first_identity((str(tmp_path / "missing"),)) == (None, [str(tmp_path / "missing")])
    assert first_identity(()) == (None, [])
