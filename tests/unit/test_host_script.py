"""Steps chained into one command on a host: each step's output and exit status come back on
their own, the chain stops at the first failure, a step's limit stops it. Run for real on this
machine (the local transport)."""

from __future__ import annotations

import time

from bluegreen.host_script import HostStep, chained, run_chain
from bluegreen.shell import Command, Secret
from bluegreen.transport.local import LocalTransport


def test_each_step_gets_its_own_output_and_status() -> None:
    results = run_chain(LocalTransport("app1"), [
        HostStep("first", Command.script('echo one; echo "to stderr" >&2')),
        HostStep("second", Command.script("printf 'no newline'")),
        HostStep("third", Command("true"))])
    assert [(r.exit_status, r.stdout, r.stderr) for r in results if r] == [
        (0, "one\n", "to stderr\n"), (0, "no newline", ""), (0, "", "")]
    assert [r.command for r in results if r] == [
        str(Command.script('echo one; echo "to stderr" >&2')),
        str(Command.script("printf 'no newline'")), "true"]


def test_the_chain_stops_at_the_first_failure() -> None:
    results = run_chain(LocalTransport("app1"), [
        HostStep("point", Command("true")),
        HostStep("check the port", Command.script("echo 'nginx holds it'; exit 3")),
        HostStep("start", Command.script("echo started"))])
    assert results[0] is not None and results[0].ok
    assert results[1] is not None and results[1].exit_status == 3
    assert results[1].stdout == "nginx holds it\n"
    assert results[2] is None


def test_a_step_that_outlives_its_limit_is_stopped_with_124() -> None:
    started = time.monotonic()
    results = run_chain(LocalTransport("app1"), [
        HostStep("hang", Command("sleep", "30"), limit=0.5),
        HostStep("after", Command("true"))])
    assert time.monotonic() - started < 10
    assert results[0] is not None and results[0].exit_status == 124
    assert results[1] is None


def test_environment_values_reach_the_steps_and_are_not_shown() -> None:
    step = HostStep("start", Command.script('echo "$TOKEN"', env={"TOKEN": Secret("s3cret")}))
    command = chained([HostStep("point", Command("true")), step])
    assert "s3cret" not in str(command)
    results = run_chain(LocalTransport("app1"), [HostStep("point", Command("true")), step])
    assert results[1] is not None and results[1].stdout == "s3cret\n"
