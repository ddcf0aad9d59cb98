"""The OpenSSH client's command line for a large upload: only what the operation resolved, and
only the host key it verified."""

from __future__ import annotations

from pathlib import Path

from bluegreen.transport.ssh.openssh import ssh_arguments
from bluegreen.transport.ssh.target import SSHTarget


def test_the_upload_client_trusts_only_the_pinned_key_and_reads_no_ssh_config() -> None:
    target = SSHTarget(name="app1", address="10.0.0.5", port=2222, user="deploy",
                       identity_files=("/keys/a", "/keys/b"))
    arguments = ssh_arguments("/usr/bin/ssh", target, Path("/tmp/pinned"), connect_timeout=7.5,
                              use_agent=False)
    assert arguments == [
        "/usr/bin/ssh", "-F", "/dev/null", "-T", "-x", "-a",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/tmp/pinned", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "HostKeyAlias=bluegreen-verified-host", "-o", "CheckHostIP=no",
        "-o", "UpdateHostKeys=no", "-o", "ConnectTimeout=8", "-o", "LogLevel=ERROR",
        "-p", "2222", "-l", "deploy", "-i", "/keys/a", "-i", "/keys/b",
        "-o", "IdentityAgent=none",
    ]
    with_agent = ssh_arguments("ssh", target, Path("k"), connect_timeout=10, use_agent=True)
    assert "IdentityAgent=none" not in with_agent
