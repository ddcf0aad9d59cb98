"""`bluegreen check`, host keys and unreachable hosts, driven through the real CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fleet_inventory, host_entry, run_cli, write_inventory
from tests.fleet import Fleet, SilentServer, free_port


def nginx_balancer(tmp_path: Path, *, broken: bool = False) -> dict[str, Any]:
    prefix = tmp_path / "nginx"
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "logs").mkdir()
    listen = free_port("127.0.10.3")
    (prefix / "nginx.conf").write_text(
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n  access_log off;\n"
        f"  include {prefix}/conf.d/*.conf;\n"
        f"  server {{ listen 127.0.10.3:{listen}; location / {{ return 200 'ok'; }} }}\n"
        + ("  this_is_not_a_directive on;\n" if broken else "")
        + "}\n"
    )
    return {
        "kind": "nginx",
        "managed_file": str(prefix / "conf.d" / "shop-upstream.conf"),
        "main_config": str(prefix / "nginx.conf"),
        "prefix": str(prefix),
        "state_dir": str(tmp_path / "state"),
    }


def check(tmp_path: Path, data: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any], str]:
    inventory = write_inventory(tmp_path / "inventory.yml", data)
    result = run_cli("-i", str(inventory), "--json", "check", *extra)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_check_against_the_fleet_is_all_green(fleet: Fleet, tmp_path: Path) -> None:
    data = fleet_inventory(fleet, balancer=nginx_balancer(tmp_path) and ["lb1"])
    data["balancer"] = nginx_balancer(tmp_path / "b")
    data["app"] = {"root": str(tmp_path / "srv"), "start": "true", "stop": "true"}
    code, document, _ = check(tmp_path, data)
    rows = document["data"]["checks"]
    assert code == 0, rows
    assert all(row["ok"] for row in rows)
    names = {(row["host"], row["check"]) for row in rows}
    assert {("lb1", "nginx installed"), ("lb1", "nginx config"), ("lb1", "state dir writable"),
            ("app1", "blue port 9501"), ("app2", "green port 9502"),
            ("app1", "app root writable")} <= names
    assert (tmp_path / "b" / "state").stat().st_mode & 0o777 == 0o700


def test_check_flags_a_broken_balancer_config(fleet: Fleet, tmp_path: Path) -> None:
    data = fleet_inventory(fleet)
    data["balancer"] = nginx_balancer(tmp_path, broken=True)
    code, document, _ = check(tmp_path, data)
    failed = [row for row in document["data"]["checks"] if not row["ok"]]
    assert code == 6
    assert [(row["host"], row["check"]) for row in failed] == [("lb1", "nginx config")]
    assert "this_is_not_a_directive" in failed[0]["detail"]


def test_check_human_output_is_a_table(fleet: Fleet, tmp_path: Path) -> None:
    data = fleet_inventory(fleet)
    data["balancer"] = nginx_balancer(tmp_path)
    inventory = write_inventory(tmp_path / "inventory.yml", data)
    result = run_cli("-i", str(inventory), "--no-color", "check")
    assert result.returncode == 0
    assert "✓" in result.stdout and "lb1" in result.stdout and "nginx config" in result.stdout


def test_unknown_host_key_is_refused_with_the_fingerprint_and_the_fix(fleet: Fleet,
                                                                      tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    data = fleet_inventory(fleet, app=["app1"])
    data["ssh"]["known_hosts"] = str(empty)
    code, document, _ = check(tmp_path, data)
    assert code == 3
    connect = [r for r in document["data"]["checks"] if r["check"] == "connect"]
    assert all(not r["ok"] for r in connect)
    detail = connect[0]["detail"]
    assert "is not in" in detail and "SHA256:" in detail and "ssh-keyscan" in detail
    assert empty.read_text() == ""  # nothing recorded without the opt-in


def test_changed_host_key_is_refused_with_ssh_keygen_hint(fleet: Fleet, tmp_path: Path) -> None:
    lines = fleet.known_hosts.read_text().splitlines()
    app1 = fleet["app1"]
    other_key = fleet["app2"].known_hosts_line.split()[1:]
    tampered = [
        f"[{app1.address}]:{app1.port} {' '.join(other_key)}" if line.startswith(
            f"[{app1.address}]:{app1.port} ") else line for line in lines]
    known = tmp_path / "known_hosts"
    known.write_text("\n".join(tampered) + "\n")
    data = fleet_inventory(fleet, app=["app1"])
    data["ssh"]["known_hosts"] = str(known)
    code, document, _ = check(tmp_path, data)
    assert code == 3
    row = next(r for r in document["data"]["checks"] if r["host"] == "app1")
    assert "CHANGED" in row["detail"] and f"ssh-keygen -R '[{app1.address}]:{app1.port}'" in row[
        "detail"]


def test_trust_on_first_use_records_the_key(fleet: Fleet, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    data = fleet_inventory(fleet, app=["app1"])
    data["ssh"].update(known_hosts=str(known), trust_on_first_use=True)
    code, _, _ = check(tmp_path, data)
    assert code == 0
    recorded = known.read_text()
    assert fleet["app1"].known_hosts_line in recorded
    assert fleet["lb1"].known_hosts_line in recorded
    assert known.stat().st_mode & 0o777 == 0o600
    # second run: the recorded key is now checked strictly, and still matches
    data["ssh"]["trust_on_first_use"] = False
    assert check(tmp_path, data)[0] == 0


def test_unreachable_hosts_are_all_named_in_one_report(fleet: Fleet, tmp_path: Path) -> None:
    silent = SilentServer("127.0.10.21")
    try:
        data = fleet_inventory(fleet, app=["app1"])
        data["hosts"]["app"] += [
            {"name": "refusing", "address": "127.0.10.20", "port": free_port("127.0.10.20")},
            {"name": "hanging", "address": silent.address, "port": silent.port},
        ]
        data["ssh"]["connect_timeout"] = 1
        started = time.monotonic()
        code, document, _ = check(tmp_path, data)
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert code == 3
    failed = {r["host"]: r["detail"] for r in document["data"]["checks"] if not r["ok"]}
    assert set(failed) == {"refusing", "hanging"}
    assert "127.0.10.20" in failed["refusing"]
    assert "no SSH answer within 1 s" in failed["hanging"]
    assert elapsed < 8  # the 1 s connect timeout really fired (hosts are checked in parallel)


@pytest.mark.parametrize("down", [["app2", "lb1"]])
def test_two_of_three_hosts_down_both_named(fleet: Fleet, tmp_path: Path, down: list[str]
                                            ) -> None:
    data = fleet_inventory(fleet, app=["app1"])
    data["hosts"]["app"].append(host_entry(fleet, "app2") | {"port": free_port("127.0.10.2")})
    data["hosts"]["balancer"] = [host_entry(fleet, "lb1") | {"port": free_port("127.0.10.3")}]
    inventory = write_inventory(tmp_path / "inventory.yml", data)
    result = run_cli("-i", str(inventory), "check")
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    for name in down:
        assert name in result.stdout


@pytest.mark.parametrize("kind", ["directory", "not utf-8"])
def test_an_unreadable_known_hosts_is_a_host_key_error_not_a_crash(
        fleet: Fleet, tmp_path: Path, kind: str) -> None:
    data = fleet_inventory(fleet)
    data["balancer"] = nginx_balancer(tmp_path)
    known_hosts = tmp_path / "known_hosts"
    if kind == "directory":
        known_hosts.mkdir()
    else:
        known_hosts.write_bytes(b"\xff\xfe\x00 not a known_hosts file\n")
    data["ssh"]["known_hosts"] = str(known_hosts)
    code, document, _ = check(tmp_path, data)
    assert code == 3
    details = " ".join(row["detail"] for row in document["data"]["checks"] if not row["ok"])
    assert str(known_hosts) in details
