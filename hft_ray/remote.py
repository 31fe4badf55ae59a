"""Ray call semantics shared by the actors.

Actors restart after a crash (`max_restarts=-1`) but their calls are not retried by default
(`max_task_retries=0`): a submission or an order that ran twice could trade twice. Methods
that are safe to run twice are marked `@idempotent`, so a call that meets the actor while it
restarts is resent instead of failing.
"""

from __future__ import annotations

import ray

idempotent = ray.method(max_task_retries=-1)
