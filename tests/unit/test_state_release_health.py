from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from bluegreen.drift import ensure_consistent
from bluegreen.errors import UsageError
from bluegreen.health import HealthChecker
from bluegreen.inventory import HealthSettings
from bluegreen.model import Colour
from bluegreen.release import package
from bluegreen.state import State


def test_state_round_trips_and_flips() -> None:
    state = State(service="shop")
    flipped = state.after_flip(Colour.BLUE, release="v1", actor="me@here",
                               managed={"lb1": "text"})
    again = State.from_json(flipped.to_json(), service="shop")
    assert again == flipped
    assert again.live is Colour.BLUE and again.generation == 1
    assert again.colour(Colour.BLUE).release == "v1"
    assert again.weights == {"blue": 100, "green": 0}
    assert json.loads(flipped.to_json())["live"] == "blue"


def test_states_that_disagree_raise_drift() -> None:
    one = State(service="s", generation=2, live=Colour.BLUE)
    other = State(service="s", generation=1, live=Colour.GREEN)
    try:
        ensure_consistent({"lb1": one, "lb2": other})
    except Exception as exc:
        assert getattr(exc, "exit_code", None) == 9 and "lb2" in str(exc)
    else:
        raise AssertionError("expected DriftError")


def test_directory_packaging_is_deterministic(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    first = package(tmp_path, release=None)
    (tmp_path / "a" / "x.txt").touch()  # a new mtime does not change the artifact
    second = package(tmp_path, release=None)
    assert first.sha256 == second.sha256 and first.release == first.sha256[:12]


def test_health_checker_needs_consecutive_successes_and_never_sleeps_for_real() -> None:
    answers = iter([503, 200, 503, 200, 200])
    client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(next(answers), text="ok v2")))
    slept: list[float] = []
    checker = HealthChecker(client, clock=lambda: 0.0, sleep=slept.append)
    spec = HealthSettings(successes=2, retries=10, interval=0.5)
    outcome = checker.wait_healthy("http://app/health", spec)
    assert outcome.healthy and outcome.attempts == 5
    assert slept == [0.5] * 4


def test_health_checker_reports_the_last_failures() -> None:
    client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, text="starting")))
    checker = HealthChecker(client, clock=lambda: 0.0, sleep=lambda s: None)
    outcome = checker.wait_healthy("http://app/health", HealthSettings(retries=3),
                                   expect_body="ok")
    assert not outcome.healthy and outcome.attempts == 3
    assert "body lacks 'ok'" in outcome.last()[-1]


@pytest.mark.parametrize(("output", "expected"), [
    ("1700000000\n1700000100\n   40\n   95\n", True),    # newest worker started after the write
    ("1700000000\n1700000100\n  100\n", True),           # in the same second
    ("1700000050\n1700000100\n   60\n   95\n", False),   # written after every worker started
    ("1700000000\n1700000100\n", None),                  # no worker to tell by
])
def test_whether_the_balancer_loaded_its_file(output: str, expected: bool | None) -> None:
    from bluegreen.balancer.base import file_loaded

    assert file_loaded(output) is expected


def _archive(tmp_path: Path, *members: tarfile.TarInfo) -> Path:
    path = tmp_path / "release.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(("member", "why"), [
    (_member("/etc/cron.d/x"), "absolute"),
    (_member("../../outside"), "outside"),
    (_member("dev", tarfile.CHRTYPE), "special file"),
    (_member("fifo", tarfile.FIFOTYPE), "special file"),
    (_member("escape", tarfile.SYMTYPE, "/etc"), "absolute"),
    (_member("up", tarfile.SYMTYPE, "../../etc"), "outside"),
])
def test_an_archive_that_could_escape_or_create_devices_is_refused(
        tmp_path: Path, member: tarfile.TarInfo, why: str) -> None:
    with pytest.raises(UsageError) as caught:
        package(_archive(tmp_path, _member("ok.txt"), member), release="v1")
    assert caught.value.exit_code == 2
    assert repr(member.name) in caught.value.message
    assert why in caught.value.message.lower()


def test_a_directory_with_a_socket_or_an_escaping_symlink_is_refused(tmp_path: Path) -> None:
    import socket

    (tmp_path / "app.py").write_text("x")
    (tmp_path / "inside").symlink_to("app.py")  # fine
    package(tmp_path, release="v1")
    (tmp_path / "escape").symlink_to("/etc")
    with pytest.raises(UsageError) as caught:
        package(tmp_path, release="v1")
    assert "'escape' is a symlink leading outside" in caught.value.message
    (tmp_path / "escape").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "app.sock"))
        with pytest.raises(UsageError) as caught:
            package(tmp_path, release="v1")
    assert "'app.sock' is not a regular file" in caught.value.message


@pytest.mark.parametrize("release", ["", "é" * 128, "a/b", ".hidden", "-rf"])
def test_a_release_id_that_is_no_directory_name_is_refused(tmp_path: Path, release: str
                                                           ) -> None:
    (tmp_path / "app.py").write_text("x")
    with pytest.raises(UsageError) as caught:  # "" is not "no id": it never means the checksum
        package(tmp_path, release=release)
    assert caught.value.where == "--release"


def test_a_release_from_release_url_is_fetched_by_the_hosts_with_its_checksum() -> None:
    from bluegreen.errors import UsageError
    from bluegreen.inventory import validate_inventory
    from bluegreen.operations.shared import artifact_from
    from bluegreen.release import ReleaseLayout

    data = {"service": "shop", "hosts": {"app": ["app1"], "balancer": ["lb1"]},
            "release": {"url": "https://artifacts.example/{{ service }}/{{ release }}.tar.gz"}}
    inventory = validate_inventory(data, path=Path("inv.yml"), environ={})
    sha = "ab" * 32
    artifact = artifact_from(inventory, source=None, release="v2", sha256=sha.upper())
    assert (artifact.url, artifact.sha256, artifact.size) == (
        "https://artifacts.example/shop/v2.tar.gz", sha, 0)
    command = ReleaseLayout("/srv/shop").upload_command(artifact)
    assert command.argv[-4:] == ("/srv/shop", "v2", sha, "https://artifacts.example/shop/v2.tar.gz")
    assert "curl -fsSL" in command.argv[2]
    for release, checksum, where in (("v2", None, "--sha256"), (None, sha, "--release"),
                                     ("v2", "not-a-sha", "--sha256")):
        with pytest.raises(UsageError) as caught:
            artifact_from(inventory, source=None, release=release, sha256=checksum)
        assert caught.value.where == where
    plain = validate_inventory({**data, "release": {}}, path=Path("inv.yml"), environ={})
    with pytest.raises(UsageError) as caught:  # a checksum only means something with a URL
        artifact_from(plain, source="/nonexistent", release="v2", sha256=sha)
    assert caught.value.where == "--sha256"
