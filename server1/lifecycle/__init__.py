"""Endpoint lifecycle, resized/ watcher and model weights: the interface the web app uses (Lifecycle).

One process of the deployment leads (scheduler.Lease); its scheduler thread runs tick()
every QUEUE_POLL_SECONDS: scan every user's resized/, keep the GPU wanted while work is
pending and for SCALE_DOWN_AFTER_SECONDS after the last of it (after a login: from the moment
the GPU is ready, however long its cold start takes), step
the scaler towards that, and invoke the endpoint for new jobs once it serves. While the
GPU is off and nothing happens it looks every IDLE_POLL_FACTOR x QUEUE_POLL_SECONDS: a
cold start takes minutes anyway, and logins and uploads wake it at once. The leader
publishes its view (layout.system("lifecycle-status.json")) when it changes, so the other
processes answer worker_status() and health() from it; a login or upload handled by one of
those asks AWS for the GPU directly and the leader sees it up and counts that as activity.

Server1 knows no GPU: the deployment's models are what Server2 reports it chose (layout.server2_report(),
written as soon as Server2 has picked its device); before its first report, the CPU rule for the device
expected here (a SageMaker endpoint is a GPU, deploy/stack.yaml; local mode assumes none). The leader
fetches the weights of that choice, and of a new one as soon as Server2 reports it.
"""

from server1.lifecycle.config import LifecycleConfig
from server1.lifecycle.coordinator import Lifecycle

__all__ = ["Lifecycle", "LifecycleConfig"]
