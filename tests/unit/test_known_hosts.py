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
    assert set(first.keys_for("[10.0.0.1]:2222")) == {"ssh-ed25519"}
    assert first.keys_for("[10.0.0.2]:2222") == {}
    # a line appended (trust on first use) is a new version of the file: read again
    with known.open("a") as handle:
        handle.write(host_key_line(tmp_path, "[10.0.0.2]:2222"))
    again = connect._known_host_keys(known)
    assert again is not first and set(again.keys_for("[10.0.0.2]:2222")) == {"ssh-ed25519"}


def test_hashed_names_and_names_sharing_a_line_are_found(tmp_path: Path) -> None:
    import paramiko

    known = tmp_path / "known_hosts"
    line = host_key_line(tmp_path, "[10.0.0.1]:2222,[10.0.0.3]:2222")
    hashed = paramiko.HostKeys.hash_host("[10.0.0.4]:22")
    known.write_text(line + "# a comment\n" + line.replace("[10.0.0.1]:2222,[10.0.0.3]:2222",
                                                              hashed) + "not a key line\n")
    keys = connect._known_host_keys(known)
    for name in ("[10.0.0.1]:2222", "[10.0.0.3]:2222", "[10.0.0.4]:22"):
        assert set(keys.keys_for(name)) == {"ssh-ed25519"}, name
    assert keys.keys_for("[10.0.0.5]:22") == {}
