"""Task families: each samples batches ``(xs, ys, xq, yq)`` with a leading task dimension."""

from innerloop.tasks.episodes import EpisodeTasks
from innerloop.tasks.sinusoid import SinusoidTasks

__all__ = ["SinusoidTasks", "EpisodeTasks"]
