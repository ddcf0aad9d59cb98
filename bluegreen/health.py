"""Health checks over HTTP — the only httpx importer. The client, the clock and sleep are injected
so unit tests run against httpx.MockTransport with a fake clock and never sleep."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bluegreen.inventory import HealthSettings, Inventory

if TYPE_CHECKING:
    import httpx


def import_ahead(inventory: Inventory) -> None:
    """For an operation that will make HTTP requests from here (verifying the public URLs after
    a flip, checks through forwarded ports): import httpx in the background while it works on
    the hosts. httpx with httpcore and h11 takes ~100 ms of CPU to import, which otherwise
    stands between the flip and its verification. Called once connected, so that no thread
    is importing paramiko at the same time."""
    if not inventory.verify.urls and inventory.health.via == "host":
        return
    if "httpcore" not in sys.modules:
        threading.Thread(target=_import_httpx, name="import httpx", daemon=True).start()


def _import_httpx() -> None:
    try:
        import httpcore  # noqa: F401 - what httpx.Client() imports
        import httpx  # noqa: F401
    except ImportError:  # the import in the checker reports it
        pass


def needed_successes(spec: HealthSettings, attempts: int, successes: int | None = None) -> int:
    """How many passes in a row a check of `attempts` probes needs: `successes` (default
    health.successes), but never more than it makes — `status` probes once."""
    return min(successes if successes is not None else spec.successes, attempts)


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str  # "200 in 3 ms" or the error
    answered: bool = True  # False when no HTTP response came at all


@dataclass
class HealthOutcome:
    healthy: bool
    attempts: int
    probes: list[Probe] = field(default_factory=list)

    def last(self, count: int = 3) -> list[str]:
        return [p.detail for p in self.probes[-count:]]


class HealthChecker:
    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        verify_tls: bool = False,
    ):
        self._client = client
        self._verify_tls = verify_tls
        self.clock = clock
        self.sleep = sleep

    @property
    def client(self) -> httpx.Client:
        """Made on first use: checks that run on the hosts never import httpx (~50 ms)."""
        if self._client is None:
            import httpx

            # Loading the CA bundle costs ~50 ms and instance checks are plain HTTP: only
            # checks of public https URLs ask for it.
            self._client = httpx.Client(trust_env=False, follow_redirects=False,
                                        verify=self._verify_tls)
        return self._client

    def probe(self, url: str, spec: HealthSettings, *, expect_body: str | None = None,
              expect_header: tuple[str, str] | None = None,
              headers: dict[str, str] | None = None) -> Probe:
        import httpx

        started = self.clock()
        try:
            response = self.client.get(url, timeout=spec.timeout, headers=headers)
        except httpx.HTTPError as exc:
            return Probe(False, f"{type(exc).__name__}: {exc or 'no response'}", answered=False)
        elapsed = (self.clock() - started) * 1000
        body = response.text
        wanted = expect_body if expect_body is not None else spec.expect_body
        probe = judged(response.status_code, elapsed, body, spec, expect_body=expect_body,
                       body_matches=not wanted or wanted in body)
        if probe.ok and expect_header:
            name, value = expect_header
            got = response.headers.get(name)
            if got is None or value not in got:
                return Probe(False, f"header {name} is {got!r}, expected {value!r}; "
                                    f"{probe.detail}")
        return probe

    def wait_healthy(self, url: str, spec: HealthSettings, *, retries: int | None = None,
                     successes: int | None = None, expect_body: str | None = None,
                     expect_header: tuple[str, str] | None = None,
                     headers: dict[str, str] | None = None) -> HealthOutcome:
        """Probe until `successes` consecutive successes or `retries` attempts."""
        attempts = retries if retries is not None else spec.retries
        needed = needed_successes(spec, attempts, successes)
        outcome = HealthOutcome(healthy=False, attempts=0)
        streak = 0
        for attempt in range(1, attempts + 1):
            probe = self.probe(url, spec, expect_body=expect_body, expect_header=expect_header,
                               headers=headers)
            outcome.probes.append(probe)
            outcome.attempts = attempt
            streak = streak + 1 if probe.ok else 0
            if streak >= needed:
                outcome.healthy = True
                return outcome
            if attempt < attempts:
                self.sleep(spec.interval)
        return outcome

    def wait_then_hold(self, url: str, spec: HealthSettings, *, hold: int,
                       expect_body: str | None = None,
                       expect_header: tuple[str, str] | None = None,
                       headers: dict[str, str] | None = None) -> HealthOutcome:
        """Probe until a first success (within `spec.retries` attempts), then `hold` more
        probes that must all succeed, at once: what must hold for every request (a tester
        always reaching the canary), not for one lucky one."""
        outcome = self.wait_healthy(url, spec, successes=1, expect_body=expect_body,
                                    expect_header=expect_header, headers=headers)
        for _ in range(hold if outcome.healthy else 0):
            probe = self.probe(url, spec, expect_body=expect_body, expect_header=expect_header,
                               headers=headers)
            outcome.probes.append(probe)
            outcome.attempts += 1
            if not probe.ok:
                outcome.healthy = False
                break
        return outcome

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def judged(status: int, elapsed_ms: float, body: str, spec: HealthSettings, *,
           expect_body: str | None, body_matches: bool) -> Probe:
    """A probe's verdict and the line that explains it, wherever the request was made."""
    detail = f"{status} in {elapsed_ms:.0f} ms: {_snippet(body)}"
    if status != spec.expect_status:
        return Probe(False, f"expected status {spec.expect_status}, got {detail}")
    if not body_matches:
        wanted = expect_body if expect_body is not None else spec.expect_body
        return Probe(False, f"body lacks {wanted!r}; got {detail}")
    return Probe(True, detail)


def _snippet(body: str, limit: int = 80) -> str:
    text = " ".join(body.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
