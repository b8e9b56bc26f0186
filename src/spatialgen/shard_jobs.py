"""Dataset-sized jobs, one input shard at a time: in this process, across ``accelerate`` processes, or on Ray Data.

Curation (``spatialgen curate``) and intrinsics extraction (``spatialgen intrinsics extract
--source``) are both "read an input shard, write an output shard and a report". What they share
lives here:

* **the unit of work and of resumption is the shard**: a shard is done when ``OUT/reports/<name>.json``
  exists. A worker writes its output first and its report last, each atomically, so a job killed
  and restarted keeps every finished shard, redoes the one it was in, and never reads half a file;
* **a job is described by settings**: a dataclass of names and numbers (never loaded models), so
  Ray can ship it to any node; ``settings.worker()`` builds the models once per process and
  returns the function that processes one shard;
* **three engines, the same bytes**: ``local`` runs the shards in order; under ``accelerate
  launch`` it gives process *i* the shards *i*, *i + n*, ... (disjoint, so no two processes write
  one file); ``ray`` maps the shards over Ray Data actors (a cluster at ``address``, or a local
  Ray started for the job). Workers pin torch's thread count, so floats, and the output bytes, do
  not depend on the engine.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

ENGINES: tuple[str, ...] = ("local", "ray")

ShardWorker = Callable[[Any, Path], dict[str, Any]]


class ShardJobSettings(Protocol):
    """What a job's settings provide: a worker for this process, and a thread count for torch."""

    threads: int

    def worker(self) -> ShardWorker: ...


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ValueError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    return engine


def report_path(out: Path, name: str) -> Path:
    return out / "reports" / f"{name}.json"


def pending(shards: Sequence[Any], out: Path) -> list[Any]:
    """The shards whose report is not written yet."""
    return [s for s in shards if not report_path(out, s.name).is_file()]


def with_threads(threads: int, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` with torch pinned to ``threads`` threads (the same in every engine: the same floats)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return work()
    finally:
        torch.set_num_threads(previous)


def process_share(shards: Sequence[Any]) -> tuple[list[Any], Any]:
    """This process's share of ``shards`` under ``accelerate launch`` (all of them in a single process)."""
    from accelerate import PartialState

    state = PartialState()
    return list(shards)[state.process_index :: state.num_processes], state


def run_local(
    shards: Sequence[Any], out: Path, settings: ShardJobSettings, progress: Callable[[int], None] | None = None
) -> None:
    """This process's share of the shards not done yet, one after the other; all processes wait for each other.

    The share is cut from the full list before finished shards are dropped, so every process
    agrees on it however far the others have got.
    """
    mine, state = process_share(shards)
    mine = pending(mine, out)
    if mine:
        worker = settings.worker()
        for shard in mine:
            with_threads(settings.threads, lambda shard=shard: worker(shard, out))
            if progress is not None:
                progress(state.num_processes)
    state.wait_for_everyone()


class _RayShardActor:
    """A Ray Data actor: rebuilds the settings by class name, builds its worker once, then takes whole shards."""

    def __init__(self, out: str, settings_class: str, settings: dict[str, Any], shard_class: str) -> None:
        self.out = Path(out)
        self.settings = _named(settings_class)(**settings)
        self.shard_class = _named(shard_class)
        self.worker = self.settings.worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        names = []
        for encoded in batch["shard"]:
            shard = self.shard_class(**json.loads(str(encoded)))
            names.append(with_threads(self.settings.threads, lambda shard=shard: self.worker(shard, self.out))["shard"])
        return {"shard": names}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _named(qualified: str) -> Any:
    module, _, name = qualified.partition(":")
    return getattr(importlib.import_module(module), name)


def run_ray(shards: Sequence[Any], out: Path, settings: Any, address: str | None = None, workers: int = 2) -> None:
    """The same shards through Ray Data: a cluster at ``address``, or a local Ray started for the job."""
    try:
        import ray
    except ImportError as error:
        raise ImportError("--engine ray needs Ray Data: pip install 'spatialgen[scale]'") from error
    if not shards:
        return
    started = False
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": max(1, workers), "include_dashboard": False}
        try:
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
        except (ConnectionError, RuntimeError) as error:
            if not address:
                raise
            raise ValueError(
                f"no Ray cluster answers at --ray-address {address} ({str(error).splitlines()[0][:160]}); start one "
                "with `ray start --head`, or leave --ray-address out to run a local Ray for this job"
            ) from None
        started = True
    try:
        items = [{"shard": json.dumps(asdict(s))} for s in shards]
        dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        dataset.map_batches(
            _RayShardActor,
            fn_constructor_kwargs={
                "out": str(out),
                "settings_class": _qualified(type(settings)),
                "settings": asdict(settings),
                "shard_class": _qualified(type(shards[0])),
            },
            batch_size=1,
            concurrency=max(1, workers),
            num_cpus=1,
        ).materialize()
    finally:
        if started:
            ray.shutdown()


def run_shards(
    shards: Sequence[Any],
    out: Path,
    settings: Any,
    engine: str = "local",
    address: str | None = None,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Process every shard of ``shards`` not done yet into ``out`` with ``engine``."""
    check_engine(engine)
    todo = pending(shards, out)
    if progress is not None:
        progress(len(shards) - len(todo))
    if engine == "ray":
        run_ray(todo, out, settings, address, workers)
        if progress is not None:
            progress(len(todo))
    else:
        run_local(shards, out, settings, progress)
