from __future__ import annotations

import shlex
import subprocess

from bluegreen.shell import Command, Secret

NASTY = "$(touch PWNED) `id`; rm -rf / && echo 'q' \"d\"\nsecond line"


def test_arguments_are_quoted_structurally() -> None:
    command = Command("printf", "%s", NASTY)
    assert shlex.split(command.render()) == ["printf", "%s", NASTY]
    out = subprocess.run(["sh", "-c", command.render()], capture_output=True, text=True)
    assert out.stdout == NASTY


def test_script_takes_values_as_positional_parameters() -> None:
    command = Command.script('printf "%s|%s" "$1" "$2"', NASTY, "two")
    out = subprocess.run(["sh", "-c", command.render()], capture_output=True, text=True)
    assert out.stdout == f"{NASTY}|two"


def test_secrets_are_masked_when_printed_and_revealed_only_on_render() -> None:
    command = Command("app", "--token", Secret("hunter2"), env={"DB_PASSWORD": Secret("pw1"),
                                                                 "MODE": "prod"})
    assert "hunter2" not in str(command) and "pw1" not in str(command)
    assert str(command) == "env 'DB_PASSWORD=***' MODE=prod app --token '***'"
    assert "hunter2" in command.render() and "hunter2" not in repr(command)


def test_the_environment_travels_on_stdin_never_in_the_command_line() -> None:
    command = Command("sh", "-c", 'printf "%s|%s" "$DB_PASSWORD" "$MODE"',
                      env={"DB_PASSWORD": Secret(NASTY), "MODE": "prod"})
    assert "touch PWNED" not in command.render() and "prod" not in command.render()
    out = subprocess.run(["sh", "-c", command.render()], input=command.input(),
                         capture_output=True)
    assert out.stdout.decode() == f"{NASTY}|prod"
    sudo = command.with_sudo()
    assert sudo.input() == command.input() and sudo.render().startswith("sudo -n -- sh -c")
    assert str(sudo) == "sudo -n -- env 'DB_PASSWORD=***' MODE=prod sh -c " + shlex.quote(
        'printf "%s|%s" "$DB_PASSWORD" "$MODE"')


def test_an_environment_name_must_be_a_name() -> None:
    import pytest

    for name in ("-S sh -c 'id'", "A=B", "", "1X", "A B"):
        with pytest.raises(ValueError):
            Command("true", env={name: "x"})


def test_sudo_wraps_the_whole_argv() -> None:
    assert str(Command("nginx", "-t").with_sudo()) == "sudo -n -- nginx -t"


def test_known_secret_values_are_redacted_from_text() -> None:
    from bluegreen.shell import redact

    Secret('pa"ss\\word-42')
    Secret("ab")  # too short to mask without masking ordinary words
    assert redact('dsn=pa"ss\\word-42 ab') == "dsn=*** ab"
    assert redact('{"m": "pa\\"ss\\\\word-42"}') == '{"m": "***"}'  # as JSON writes it
