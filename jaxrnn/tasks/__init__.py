"""The tasks ``jaxrnn train --task`` knows: bundled or generated data, a model readout, metrics and a plot.

Each module defines one :class:`~jaxrnn.tasks.base.Task` as ``TASK``; :data:`TASKS` maps names to them.
"""

from jaxrnn.tasks import adding, charlm, copy, digits, sunspots
from jaxrnn.tasks.base import MissingDependency, RunConfig, Task, TaskData, build_model, require

#: The tasks by ``--task`` name, the default first.
TASKS: dict[str, Task] = {
    t.name: t for t in (digits.TASK, sunspots.TASK, adding.TASK, copy.TASK, charlm.TASK)
}

#: The task ``jaxrnn train`` runs without ``--task``.
DEFAULT_TASK = "digits"

__all__ = [
    "DEFAULT_TASK",
    "TASKS",
    "MissingDependency",
    "RunConfig",
    "Task",
    "TaskData",
    "build_model",
    "require",
]
