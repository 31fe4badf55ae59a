"""Ray call semantics shared by the actors.

Actors restart after a crash (`max_restarts=-1`) but their calls are not retried by default
(`max_task_retries=0`): a submission or an order that ran twice could trade twice. Methods
that are safe to run twice are marked `@idempotent`, so a call that meets the actor while it
restarts is resent instead of failing.
"""

from __future__ import annotations

import ray

idempotent = ray.method(max_task_retries=-1)

#: A method on the hot path, called for every batch or trade: Ray keeps no task event of it.
#: Task events cost a record in the GCS each (it grew to 160 MiB in two minutes of a run) and
#: a Ray dashboard row each, for calls that carry books, not work anyone inspects one by one.
hot_path = ray.method(enable_task_events=False)
idempotent_hot_path = ray.method(max_task_retries=-1, enable_task_events=False)
