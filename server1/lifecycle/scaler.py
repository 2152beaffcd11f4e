"""Scaling the SageMaker endpoint between 0 and 1: a small state machine over what AWS reports.

Each step reads the endpoint's real state (studio.sagemaker: DescribeEndpoint, or
DescribeInferenceComponent), never sends an update while it is in a transition (Creating,
Updating, ...), and sends at most one update towards the wanted count. Any fault only delays the
next step (with a growing pause on top of boto3's own adaptive retries), so the machine converges
once AWS answers again. A plain variant's refusal to go to zero is reported, not swallowed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from studio.sagemaker import TRANSITIONS, Capacity, EndpointApi, NoSuchVariant

log = logging.getLogger(__name__)

REFRESH_SECONDS = 120.0  # re-read a settled endpoint this often (it can change behind our back)
MAX_PAUSE_SECONDS = 60.0  # longest pause between steps after repeated faults
REFUSAL_RETRY_SECONDS = 3600.0  # after AWS refused scale-to-zero, try again this much later


def _describe_error(e: Exception) -> str:
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}"
    return str(e)


class Scaler:
    """step(want) moves the endpoint one step towards want (0 or 1) and remembers what it saw."""

    def __init__(self, api: EndpointApi, clock: Callable[[], float] = time.time, poll_seconds: float = 5.0) -> None:
        self.api = api
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.capacity: Capacity | None = None
        self.requested: int | None = None  # the count we last asked for and AWS accepted
        self.error: str | None = None
        self.refusal: str | None = None
        self.updates = 0  # accepted update requests (for tests and figures)
        self._refused_until = 0.0
        self._next_describe = 0.0
        self._pause_until = 0.0
        self._faults = 0

    def step(self, want: int) -> bool:
        """One step towards want. True when the endpoint was found up without our asking
        (another Server1 process after a login, an operator, a restart): that counts as activity."""
        now = self.clock()
        if now < self._pause_until:
            return False
        cap = self.capacity
        refused = want == 0 and now < self._refused_until
        if (
            cap is None
            or now >= self._next_describe
            or cap.state != "InService"
            or (cap.desired != want and not refused)
        ):
            try:
                cap = self._describe(now)
            except (ClientError, BotoCoreError, NoSuchVariant) as e:
                self._fault(now, f"cannot read the state of {self.api.target}: {_describe_error(e)}")
                return False
        noticed = cap.state == "InService" and cap.desired >= 1 and self.requested in (None, 0)
        if noticed:
            self.requested = cap.desired
        if cap.state in TRANSITIONS:
            return noticed  # never update during a transition; look again next step
        if cap.state != "InService":
            self._fault(now, f"{self.api.target} is {cap.state}; it cannot be scaled until it is InService")
            return noticed
        if cap.desired == want:
            self._settled()
            return noticed
        if refused:
            return noticed
        try:
            self.api.set_count(want)
        except (ClientError, BotoCoreError) as e:
            self._update_failed(now, want, e)
            return noticed
        log.info("scaling %s from %d to %d", self.api.target, cap.desired, want)
        self.requested = want
        self.updates += 1
        self._next_describe = now  # read the new state at the next step
        self._settled()
        if want == 1:
            self.refusal, self._refused_until = None, 0.0
        return noticed

    def _describe(self, now: float) -> Capacity:
        cap = self.api.describe()
        self.capacity = cap
        self._next_describe = now + REFRESH_SECONDS
        return cap

    def _update_failed(self, now: float, want: int, e: Exception) -> None:
        what = _describe_error(e)
        code = e.response.get("Error", {}).get("Code") if isinstance(e, ClientError) else None
        if code == "ValidationException":
            # An update racing a transition is refused too: look before calling it a refusal.
            try:
                cap = self._describe(now)
            except (ClientError, BotoCoreError, NoSuchVariant):
                cap = None
            # "Cannot update in-progress endpoint": a transition that ended before we looked.
            if (cap is not None and cap.state in TRANSITIONS) or "in-progress" in what.lower():
                state = cap.state if cap else "busy"
                log.info("%s is %s; the update to %d waits (%s)", self.api.target, state, want, what)
                return
            if want == 0 and self.api.can_refuse_zero:
                self.refusal = (
                    f"AWS refused to scale {self.api.target} to 0 instances ({what}). A plain real-time "
                    "variant cannot go to zero, so the GPU keeps running and costing money. Deploy the endpoint "
                    "with an inference component (managed instance scaling, MinInstanceCount 0) and set "
                    "SAGEMAKER_INFERENCE_COMPONENT."
                )
                self._refused_until = now + REFUSAL_RETRY_SECONDS
                log.error("%s Trying again in %d minutes.", self.refusal, REFUSAL_RETRY_SECONDS // 60)
                return
        self._fault(now, f"cannot scale {self.api.target} to {want}: {what}")

    def _fault(self, now: float, message: str) -> None:
        self._faults += 1
        pause = min(self.poll_seconds * 2 ** (self._faults - 1), MAX_PAUSE_SECONDS)
        self._pause_until = now + pause
        self._next_describe = now  # whatever happened, read the real state again
        if message != self.error:
            log.warning("%s (next try in %.0f s)", message, pause)
        self.error = message

    def _settled(self) -> None:
        if self.error:
            log.info("%s: recovered", self.api.target)
        self.error, self._faults = None, 0

    def phase(self, want: int) -> str:
        """'ready' when a copy/instance serves, 'starting' when one is wanted but not there, else 'off'."""
        if self.capacity is not None and self.capacity.up:
            return "ready"
        return "starting" if want else "off"

    def health(self) -> dict:
        cap = self.capacity
        return {
            "target": self.api.target,
            "state": cap.state if cap else None,
            "desired": cap.desired if cap else None,
            "current": cap.current if cap else None,
            "error": self.error,
            "scale_to_zero_refused": self.refusal,
        }
