"""known_hosts is parsed once per version of the file and shared by every connection: with
hundreds of lines, parsing it again for each host's connection dominated a large fan-out."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bluegreen.transport.ssh import connect


def host_key_line(tmp_path: Path, name: str) -> str:
    key = tmp_path / f"key-{name.strip('[]').replace(':', '-')}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return f"{name} {kind} {blob}\n"


def test_known_hosts_is_parsed_once_per_version_of_the_file(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(host_key_line(tmp_path, "[10.0.0.1]:2222"))
    first = connect._known_host_keys(known)
    assert connect._known_host_keys(known) is first  # the same parse, shared
    assert set(first.lookup("[10.0.0.1]:2222") or {}) == {"ssh-ed25519"}
    assert first.lookup("[10.0.0.2]:2222") is None
    # a line appended (trust on first use) is a new version of the file: read again
    with known.open("a") as handle:
        handle.write(host_key_line(tmp_path, "[10.0.0.2]:2222"))
    again = connect._known_host_keys(known)
    assert again is not first and again.lookup("[10.0.0.2]:2222") is not None
