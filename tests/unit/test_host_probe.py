"""Health checks run on the app host (`health.via: host`): one command probes until the
instance passes or the attempts are spent, with bash's own requests or, on a host without bash,
curl. Run for real on this machine (the local transport, bash, curl) against an HTTP server
this test starts; every test runs with each of the two."""

from __future__ import annotations

import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bluegreen import host_probe
from bluegreen.inventory import HealthSettings
from bluegreen.shell import Command
from bluegreen.transport.base import CommandResult
from bluegreen.transport.local import LocalTransport
from tests.fleet import free_port

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="needs curl and bash")

# the PATH of a host whose probes run in bash, or in sh with curl (none when None)
_PATH: dict[str, str | None] = {}


@pytest.fixture(autouse=True, params=["bash", "curl"])
def requests_by(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[str]:
    """Every test runs twice: with bash on the host, and with curl on a host without bash."""
    _PATH["path"] = None if request.param == "bash" else host_path(
        tmp_path_factory.mktemp("bin"), "sh", "env", "curl", "head", "sleep")
    yield request.param
    _PATH.clear()


def host_path(bin_dir: Path, *tools: str) -> str:
    """A directory of only these programs, for a PATH."""
    for tool in tools:
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    return str(bin_dir)


class CountingTransport(LocalTransport):
    def __init__(self, *, path: str | None = None) -> None:
        super().__init__("app1")
        self.commands: list[Command] = []
        self.path = path or _PATH.get("path")

    def run(self, command: Command, **options: object) -> CommandResult:  # type: ignore[override]
        self.commands.append(command)
        if self.path is not None:  # a host whose PATH has no curl
            command = Command("env", f"PATH={self.path}", *command.argv)
        return super().run(command, **options)  # type: ignore[arg-type]


class Answers:
    """What the server answers, in turn (the last answer repeats)."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = [(200, "ok release v1")]
        self.served = 0

    def next(self) -> tuple[int, str]:
        reply = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return reply


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.next()
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/health", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


SPEC = HealthSettings(interval=0, retries=5, timeout=2)


def test_the_whole_wait_is_one_command_that_stops_at_the_first_pass(
        server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.replies = [(503, "starting"), (503, "starting"), (200, "ok release v1")]
    transport = CountingTransport()
    outcome = host_probe.wait_healthy(transport, url, SPEC, expect_body="release v1")
    assert outcome is not None and outcome.healthy
    assert len(transport.commands) == 1 and answers.served == 3 and outcome.attempts == 3
    assert outcome.probes[0].detail.startswith("expected status 200, got 503 in ")
    assert outcome.probes[0].detail.endswith(": starting")
    assert outcome.probes[-1].ok and outcome.probes[-1].detail.endswith(": ok release v1")


def test_successes_must_come_in_a_row(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.replies = [(200, "ok"), (500, "oops"), (200, "ok"), (200, "ok")]
    outcome = host_probe.wait_healthy(CountingTransport(), url, SPEC, successes=2)
    assert outcome is not None and outcome.healthy and answers.served == 4


def test_a_body_without_the_release_fails_every_attempt(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.replies = [(200, "ok release v1\nline two")]
    outcome = host_probe.wait_healthy(CountingTransport(), url, SPEC, retries=2,
                                      expect_body="release v2")
    assert outcome is not None and not outcome.healthy and answers.served == 2
    assert all(p.detail.startswith("body lacks 'release v2'; got 200 in ")
               for p in outcome.probes)
    assert outcome.probes[0].detail.endswith(": ok release v1 line two")


def test_nothing_listening_is_named_as_curl_saw_it() -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}/health"
    outcome = host_probe.wait_healthy(CountingTransport(), url, SPEC, retries=2,
                                      target="127.0.0.1:1 on app1")
    assert outcome is not None and not outcome.healthy and outcome.attempts == 2
    assert not outcome.probes[0].answered
    assert outcome.probes[0].detail == ("connection refused: nothing accepts connections on "
                                        "127.0.0.1:1 on app1")


def test_values_reach_curl_as_arguments_never_as_shell_text(
        server: tuple[str, Answers], tmp_path: Path) -> None:
    url, answers = server
    marker = tmp_path / "touched"
    answers.replies = [(200, "a body with $(touch " + str(marker) + ") in it")]
    outcome = host_probe.wait_healthy(CountingTransport(), url + "?q=$(id)", SPEC,
                                      expect_body=f"$(touch {marker})")
    assert outcome is not None and outcome.healthy
    assert not marker.exists()


def test_a_host_without_curl_or_bash_says_so(server: tuple[str, Answers], tmp_path: Path
                                             ) -> None:
    url, answers = server
    transport = CountingTransport(path=host_path(tmp_path, "sh", "env"))
    assert host_probe.wait_healthy(transport, url, SPEC) is None
    assert answers.served == 0


def test_bash_alone_is_enough(server: tuple[str, Answers], tmp_path: Path) -> None:
    url, answers = server
    transport = CountingTransport(path=host_path(tmp_path, "sh", "env", "bash", "sleep"))
    outcome = host_probe.wait_healthy(transport, url, SPEC, expect_body="release v1")
    assert outcome is not None and outcome.healthy and answers.served == 1


def test_a_bash_without_network_redirections_leaves_the_requests_to_curl(
        server: tuple[str, Answers], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Such a bash opens /dev/tcp/… as a file, which is not there: played by a device path
    that does not exist."""
    url, answers = server
    monkeypatch.setattr(host_probe, "NET_DEVICE", str(tmp_path / "no-tcp"))
    outcome = host_probe.wait_healthy(CountingTransport(), url, SPEC, expect_body="release v1")
    assert outcome is not None and outcome.healthy and answers.served == 1
    (tmp_path / "bin").mkdir()
    without_curl = CountingTransport(path=host_path(tmp_path / "bin", "sh", "env", "bash"))
    assert host_probe.wait_healthy(without_curl, url, SPEC) is None  # checked through a tunnel
    assert answers.served == 1


def test_an_instance_that_never_answers_costs_the_timeout_per_probe() -> None:
    """It accepts (the kernel does, on its behalf) and never answers: each probe gives up after
    health.timeout, and says so."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/health"
        spec = HealthSettings(interval=0, retries=2, timeout=0.4)
        started = time.monotonic()
        outcome = host_probe.wait_healthy(CountingTransport(), url, spec)
        took = time.monotonic() - started
    assert outcome is not None and not outcome.healthy and outcome.attempts == 2
    assert all(not p.answered and "timed out" in p.detail for p in outcome.probes)
    assert 0.8 <= took < 5


def test_what_a_probe_reports_of_an_answer(server: tuple[str, Answers]) -> None:
    url, answers = server
    answers.replies = [(302, "see elsewhere"), (200, "")]
    spec = HealthSettings(interval=0, retries=1)
    moved = host_probe.wait_healthy(CountingTransport(), url, spec)
    empty = host_probe.wait_healthy(CountingTransport(), url, spec)
    assert moved is not None and not moved.healthy and moved.probes[0].answered
    assert moved.probes[0].detail.startswith("expected status 200, got 302 in ")
    assert moved.probes[0].detail.endswith(": see elsewhere")
    assert empty is not None and empty.healthy and answers.served == 2


def test_a_single_probe_needs_a_single_success(server: tuple[str, Answers]) -> None:
    """`status` probes once: an instance that answers is healthy, whatever health.successes
    asks of a deploy's wait."""
    url, answers = server
    spec = HealthSettings(interval=0, retries=5, successes=3)
    outcome = host_probe.wait_healthy(CountingTransport(), url, spec, retries=1)
    assert outcome is not None and outcome.healthy and answers.served == 1


def test_a_long_body_of_many_lines_is_kept_short_and_cannot_fake_a_probe(
        server: tuple[str, Answers]) -> None:
    url, answers = server
    fake = "bluegreen-probe-000000000000 1 200 0.001"  # what a record's last line looks like
    answers.replies = [(503, f"down\n{fake}\n" + "x" * 5000)]
    outcome = host_probe.wait_healthy(CountingTransport(), url, SPEC, retries=2)
    assert outcome is not None and not outcome.healthy and outcome.attempts == 2
    detail = outcome.probes[0].detail
    assert detail.startswith("expected status 200, got 503 in ")
    assert f": down {fake} xxx" in detail and len(detail) < 300
