"""The operations that change what runs and where traffic goes — deploy, switch, rollback,
retire and the canary commands — each built as a plan of steps and executed inside a session
(connections + lock), always ending in a history record."""

from bluegreen.operations.canary import (
    canary_abort,
    canary_pause,
    canary_promote,
    canary_resume,
    canary_schedule,
    canary_steps,
)
from bluegreen.operations.deploy import deploy, upload_release
from bluegreen.operations.flips import retire, rollback, switch
from bluegreen.operations.shared import Options, artifact_from, refuse_during_canary

__all__ = ["Options", "artifact_from", "canary_abort", "canary_pause", "canary_promote",
           "canary_resume", "canary_schedule", "canary_steps", "deploy", "refuse_during_canary",
           "retire", "rollback", "switch", "upload_release"]
