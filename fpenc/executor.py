"""Where independent tasks run: in this process, one after another (the default), or as Ray tasks
on a local or an existing Ray cluster (``pip install 'fpenc[ray]'``).

Both executors have the same three calls, so a driver loop is written once::

    ex = make_executor(ExecutorOptions(name="ray", cpus_per_task=1))
    ex.submit("model-a", train_one, spec_a)        # tag, function, arguments
    ex.submit("model-b", train_one, spec_b)
    while ex.pending:
        tag, result = ex.next_done()               # in finishing order; a task's error is raised here,
                                                   # with the task's tag as its ``task_tag``
    ex.shutdown()

The driver alone writes files (the zoo's manifest, a batch verification's JSON lines): tasks only
return results, so a killed driver or worker loses at most the tasks that were running.

Threads: a task runs with ``cpus_per_task`` torch threads (Ray's default: 1, which also sets its
CPU reservation). Results are bit-identical across executors for the same thread count; a
different thread count changes the order of float reductions, hence the weights' last bits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fpenc.errors import ConfigError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorOptions:
    """How tasks run. ``name``: local | ray; ``address``: an existing Ray cluster (``auto``, or
    ``ray://host:10001``; default: start one on this machine); ``cpus_per_task``: torch threads (and
    Ray CPUs) per task (default: all of this process's threads locally, 1 on Ray);
    ``gpus_per_task``: Ray's GPU share per task (fractions allowed: 0.25 packs four on a GPU);
    ``max_workers``: Ray tasks running at once (default: as many as the cluster's CPUs allow)."""

    name: str = "local"
    address: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: float = 0.0
    max_workers: int | None = None

    def __post_init__(self):
        if self.name not in EXECUTORS:
            raise ConfigError(f"executor {self.name!r} is not one of {', '.join(EXECUTORS)}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise ConfigError(f"cpus per task must be at least 1, got {self.cpus_per_task}")
        if self.gpus_per_task < 0:
            raise ConfigError(f"gpus per task must be 0 or more, got {self.gpus_per_task}")
        if self.max_workers is not None and self.max_workers < 1:
            raise ConfigError(f"max workers must be at least 1, got {self.max_workers}")
        if self.name == "local" and (self.address or self.gpus_per_task):
            raise ConfigError("--ray-address and --gpus-per-task need --executor ray")


def _with_threads(threads: int | None, fn: Callable, args: tuple, kwargs: dict):
    """``fn(*args, **kwargs)`` with torch limited to ``threads`` intra-op threads (restored after)."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


class LocalExecutor:
    """Runs each task in this process when its result is asked for, in submission order."""

    name = "local"

    def __init__(self, options: ExecutorOptions = ExecutorOptions()):
        self.options = options
        self._queue: deque = deque()

    def put(self, obj: Any) -> Any:
        """A handle to pass ``obj`` to many tasks (locally: ``obj`` itself)."""
        return obj

    def submit(self, tag: Any, fn: Callable, *args, **kwargs) -> None:
        self._queue.append((tag, fn, args, kwargs))

    @property
    def pending(self) -> int:
        return len(self._queue)

    def next_done(self) -> tuple[Any, Any]:
        tag, fn, args, kwargs = self._queue.popleft()
        try:
            return tag, _with_threads(self.options.cpus_per_task, fn, args, kwargs)
        except Exception as err:
            err.task_tag = tag  # which task failed, for the driver's message
            raise

    def shutdown(self) -> None:
        self._queue.clear()


def _ray_task(threads: int, fn: Callable, *args, **kwargs):
    return _with_threads(threads, fn, args, kwargs)  # (handles from put() are top-level arguments: Ray resolves them)


class RayExecutor:
    """Runs each task as a Ray task with its CPU and GPU share; results come in finishing order."""

    name = "ray"

    def __init__(self, options: ExecutorOptions):
        try:
            import ray
        except ImportError:
            raise ConfigError("--executor ray needs Ray: pip install 'fpenc[ray]' (or pip install ray)") from None
        self.ray, self.options = ray, options
        self.threads = options.cpus_per_task or 1
        self._owns_ray = not ray.is_initialized()  # started here: shut down with the executor
        if self._owns_ray:
            try:
                ray.init(address=options.address, include_dashboard=False, log_to_driver=True)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = options.address or "a local Ray instance"
                raise ConfigError(f"could not start or reach {where}: {str(err).splitlines()[0]}") from None
        self._remote = ray.remote(_ray_task).options(
            num_cpus=self.threads, num_gpus=options.gpus_per_task, max_retries=0
        )
        self._refs: dict = {}  # ObjectRef -> tag
        self._waiting: deque = deque()  # (tag, fn, args, kwargs) beyond max_workers

    def put(self, obj: Any) -> Any:
        return self.ray.put(obj)

    def _start(self, tag, fn, args, kwargs) -> None:
        self._refs[self._remote.remote(self.threads, fn, *args, **kwargs)] = tag

    def submit(self, tag: Any, fn: Callable, *args, **kwargs) -> None:
        if self.options.max_workers is not None and len(self._refs) >= self.options.max_workers:
            self._waiting.append((tag, fn, args, kwargs))
        else:
            self._start(tag, fn, args, kwargs)

    @property
    def pending(self) -> int:
        return len(self._refs) + len(self._waiting)

    def next_done(self) -> tuple[Any, Any]:
        ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        tag = self._refs.pop(ready[0])
        if self._waiting:
            self._start(*self._waiting.popleft())
        try:
            return tag, self.ray.get(ready[0])
        except self.ray.exceptions.RayError as err:  # the task's own exception, as raised locally
            cause = getattr(err, "cause", None)
            exc = cause if isinstance(cause, Exception) else err
            exc.task_tag = tag  # which task failed, for the driver's message
            raise exc from None

    def shutdown(self) -> None:
        for ref in self._refs:
            self.ray.cancel(ref, force=True)
        self._refs.clear()
        self._waiting.clear()
        if self._owns_ray:
            self.ray.shutdown()


def make_executor(options: ExecutorOptions | None = None) -> LocalExecutor | RayExecutor:
    options = options or ExecutorOptions()
    return RayExecutor(options) if options.name == "ray" else LocalExecutor(options)


def add_executor_flags(p) -> None:
    """``--executor``, ``--ray-address``, ``--cpus-per-task``, ``--gpus-per-task``, ``--max-workers``."""
    g = p.add_argument_group("executor (where independent tasks run)")
    g.add_argument("--executor", choices=EXECUTORS, default="local", help="local (default, one after another) or ray")
    g.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: start one here)")
    g.add_argument(
        "--cpus-per-task", type=int, default=None, help="torch threads per task (default: all locally, 1 on Ray)"
    )
    g.add_argument("--gpus-per-task", type=float, default=0.0, help="GPU share per Ray task (e.g. 0.25; default 0)")
    g.add_argument("--max-workers", type=int, default=None, help="Ray tasks at once (default: as the CPUs allow)")


def executor_options(args) -> ExecutorOptions:
    """The :class:`ExecutorOptions` of parsed :func:`add_executor_flags` flags."""
    return ExecutorOptions(
        name=args.executor,
        address=args.ray_address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        max_workers=args.max_workers,
    )
