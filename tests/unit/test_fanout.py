from __future__ import annotations

import threading
import time

import pytest

from bluegreen.errors import ConnectError, FanOutError, HealthCheckFailed
from bluegreen.fanout import fan_out


def test_results_come_back_in_input_order_and_run_in_parallel() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return n * 10

    assert fan_out(list(range(6)), work, step="t", name=str, parallelism=3) == [
        0, 10, 20, 30, 40, 50]
    assert peak == 3


def test_every_failure_is_collected_not_just_the_first() -> None:
    def work(name: str) -> str:
        if name == "ok":
            return name
        if name == "bug":
            raise ValueError("boom")
        raise ConnectError("refused", where=name)

    with pytest.raises(FanOutError) as caught:
        fan_out(["down1", "ok", "down2", "bug"], work, step="connect", name=str, parallelism=4)
    error = caught.value
    assert [f.host for f in error.failures] == ["down1", "down2", "bug"]
    assert error.exit_code == 3
    text = error.paragraph()
    assert "down1 [connect]" in text and "down2 [connect]" in text and "ValueError: boom" in text
    assert [f["host"] for f in error.to_dict()["failures"]] == ["down1", "down2", "bug"]


def test_exit_code_follows_the_failures() -> None:
    def work(name: str) -> None:
        raise HealthCheckFailed("503", where=name)

    with pytest.raises(FanOutError) as caught:
        fan_out(["a", "b"], work, step="health", name=str, parallelism=2)
    assert caught.value.exit_code == 5
