"""Task families: each samples batches ``(xs, ys, xq, yq)`` with a leading task dimension
(or a dict ``source -> batch`` for incongruous mixtures)."""

from innerloop.tasks.episodes import EpisodeTasks
from innerloop.tasks.mixture import TaskMixture
from innerloop.tasks.sinusoid import SinusoidTasks
from innerloop.tasks.task import Task, TaskBatch

__all__ = ["SinusoidTasks", "EpisodeTasks", "TaskMixture", "Task", "TaskBatch"]
