from __future__ import annotations

import pytest

from bluegreen.output import HumanReporter
from bluegreen.shell import MASK, Secret


def test_progress_without_a_terminal_is_the_plain_text_with_secrets_masked(
        capsys: pytest.CaptureFixture[str]) -> None:
    secret = Secret("s3cret-token-for-output", shown="DB_PASSWORD")
    reporter = HumanReporter(color=True)  # stderr is captured here: not a terminal
    reporter.phase("start green [1/2]")
    reporter.step("app1", f"healthy :smile: [bold]x[/bold] {secret.value}", ok=True)
    reporter.step("app2", "uploaded", ok=None)
    reporter.step("app3", "refused", ok=False)
    reporter.warn("lingering [2] connections")
    assert capsys.readouterr().err.splitlines() == [
        "» start green [1/2]",
        f"  ✓ app1 healthy :smile: [bold]x[/bold] {MASK}",
        "  · app2 uploaded",
        "  ✗ app3 refused",
        "warning: lingering [2] connections",
    ]
