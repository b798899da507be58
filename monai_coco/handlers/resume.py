"""Resumable training: the whole training state saved atomically every N epochs and reloaded on the next run.

A resumed run ends bit-identical to an uninterrupted one (on one process, CPU or deterministic GPU
kernels): besides the model, optimiser, schedule and handlers, the state holds every random-number
generator the run draws from (:class:`RandomStates`) and, for epochs shorter than the data, where the
current pass over the data began (replayed on resume).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Mapping, Sized
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import Randomizable, Transform

from monai_coco.atomic_files import remove_partial_writes
from monai_coco.checkpoints import load_checkpoint, read_checkpoint, save_checkpoint
from monai_coco.folder_lock import FolderLock

__all__ = ["RandomStates", "ResumableCheckpoint", "check_training_state"]

# an LR scheduler's entries that record progress, not settings (torch.optim.lr_scheduler.LRScheduler)
_PROGRESS = {"last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial", "verbose"}


def _rank() -> int:
    """This process's rank (0 outside distributed runs). Not ``ignite.distributed.get_rank``: its first call
    creates a process group, a collective that deadlocks when only rank 0 runs the check."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return torch.distributed.get_rank() if distributed else 0


def _numpy_state(state: tuple) -> dict[str, Any]:
    """``RandomState.get_state()`` as tensors and numbers (``torch.load(weights_only=True)`` reads those)."""
    _, keys, pos, has_gauss, cached = state
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached)}  # fmt: skip


def _numpy_tuple(state: Mapping[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return ("MT19937", keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def _random_transforms(transform: Any, seen: set[int] | None = None) -> Iterator[Randomizable]:
    """Every MONAI ``Randomizable`` in ``transform``, depth first: a ``Compose``'s ``transforms`` and the
    transforms a transform keeps as attributes (``RandScaleIntensityd.scaler`` has its own ``R``)."""
    seen = set() if seen is None else seen
    if not isinstance(transform, Transform) or id(transform) in seen:
        return
    seen.add(id(transform))
    if isinstance(transform, Randomizable):
        yield transform
    for value in vars(transform).values():
        for child in value if isinstance(value, (list, tuple)) else (value,):
            yield from _random_transforms(child, seen)


def _dataset_transforms(obj: Any, seen: set[int]) -> Iterator[Randomizable]:
    """Every MONAI random transform reachable from a data set, by the walk MONAI's ``DataLoader`` seeds them
    with (``monai.data.utils.set_rnd``: lists, tuples and attributes), so that a ``ConcatDataset`` of
    several data sets (annotated and unannotated tiles) or a ``Subset`` gives each of its transforms."""
    if isinstance(obj, Transform):
        yield from _random_transforms(obj, seen)
        return
    if id(obj) in seen or isinstance(obj, (torch.Tensor, np.ndarray, str, bytes)):
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        children = obj
    else:
        children = vars(obj).values() if hasattr(obj, "__dict__") else ()
    for child in children:
        yield from _dataset_transforms(child, seen)


class RandomStates:
    """The state of every random-number generator a training run draws from, as ``state_dict``.

    torch (CPU and each CUDA device), numpy's global generator, Python's ``random``, the ``RandomState``
    (``R``) of each MONAI random transform of the training data loader's data set, inner ones and those of
    the data sets it is made of included (with ``num_workers=0``
    they run in the main process; worker processes are seeded from torch's generator each epoch), and
    the data loader's and its sampler's own ``torch.Generator`` when they have one. MONAI's
    ``DistributedSampler`` needs none: it shuffles by ``seed + epoch``.

    Args:
        data_loader: the training data loader, or ``None`` for the global generators only.
    """

    def __init__(self, data_loader: Any = None) -> None:
        self.data_loader = data_loader

    def _generators(self) -> dict[str, torch.Generator]:
        found = {}
        sampler = getattr(self.data_loader, "sampler", None)
        for name, owner in (("loader", self.data_loader), ("sampler", sampler)):
            generator = getattr(owner, "generator", None)
            if isinstance(generator, torch.Generator):
                found[name] = generator
        return found

    def transforms(self) -> list[Randomizable]:
        """The MONAI random transforms of the data loader's data set (and of those it is made of)."""
        dataset = getattr(self.data_loader, "dataset", None)
        return [] if dataset is None else list(_dataset_transforms(dataset, set()))

    def has_generators(self) -> bool:
        """Whether the data loader or its sampler draws from a ``torch.Generator`` of its own."""
        return bool(self._generators())

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state(np.random.get_state()),
            "python": {"version": version, "state": list(internal), "gauss": gauss},
            "transforms": [_numpy_state(t.R.get_state()) for t in self.transforms()],
            "generators": {name: g.get_state() for name, g in self._generators().items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore every generator; the random transforms must be the same in number as when saved, or
        none were saved (older code kept none for a ``ConcatDataset``): theirs are then left as they are.

        Raises:
            ValueError: when the number of random transforms (some saved) or of generators differs.
        """
        transforms, generators = self.transforms(), self._generators()
        if len(state["transforms"]) not in (0, len(transforms)):
            raise ValueError(
                f"the saved random states are of {len(state['transforms'])} random transforms, the data "
                f"loader now has {len(transforms)}: the training transforms were changed."
            )
        if set(state["generators"]) != set(generators):
            raise ValueError(
                f"the saved random states hold the own torch.Generator of {sorted(state['generators'])}, the "
                f"data loader now has that of {sorted(generators)} ('loader', 'sampler'): its generator "
                "setting was changed."
            )
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_numpy_tuple(state["numpy"]))
        python = state["python"]
        random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
        for transform, saved in zip(transforms, state["transforms"]):
            transform.R.set_state(_numpy_tuple(saved))
        for name, generator in generators.items():
            generator.set_state(state["generators"][name])


def check_training_state(
    path: str | os.PathLike,
    record: Mapping[str, Any] | None = None,
    engine_key: str = "trainer",
    map_location: Any = "cpu",
) -> Mapping[str, Any] | None:
    """Check a training-state file before a run builds anything from it; return its content (or ``None``).

    See that no other process trains in the file's folder (:class:`~monai_coco.folder_lock.FolderLock`,
    probed, not kept), remove the leftovers of killed writes there (on the first process only, holding the
    lock meanwhile), read the file with ``weights_only=True`` and compare its record with ``record``. It
    builds no network, so a config may call it before the processes of a distributed run meet.

    Raises:
        ValueError: one line naming the file: another run in the folder, an unreadable, unsafe or foreign
            file, a record that differs (naming each value, then and now, and how to start afresh).
    """
    path = Path(path).expanduser()
    if _rank() == 0:
        lock = FolderLock(path.parent, purpose=f"the training run writing {path.name}")
        held = lock.held
        lock.acquire()
        for leftover in remove_partial_writes(path.parent):
            logging.getLogger(__name__).info(f"removed {leftover}, left by an interrupted write")
        if not held:
            lock.release()
    if not path.is_file():
        return None
    try:
        saved = read_checkpoint(path, map_location)
    except ValueError as exc:  # damaged (e.g. a write cut by a crash of older code): say how to go on
        raise ValueError(f"{str(exc).rstrip('.')}; move it away to start afresh.") from exc
    if not isinstance(saved, Mapping) or engine_key not in saved:
        raise ValueError(f"{path} is not a training state (no '{engine_key}' entry); move it away to start "
                         "afresh.")  # fmt: skip
    then, now = saved.get(ResumableCheckpoint.record_key) or {}, _plain(dict(record or {}))
    differences = [f"{k}={then[k]!r} (now {now[k]!r})" for k in now if k in then and then[k] != now[k]]
    if differences:
        raise ValueError(
            f"{path} was saved by a run with other settings: {', '.join(differences)}; rerun with those "
            f"settings to resume, or delete {path} (or use another ckpt_dir) to start afresh."
        )
    return saved


class ResumableCheckpoint:
    """Save the whole training state to one file every ``save_interval`` epochs; resume from it on start.

    Unlike MONAI's ``CheckpointSaver`` (which deletes the previous file, then writes), the file is replaced
    atomically (:func:`~monai_coco.checkpoints.save_checkpoint`), so a run killed at any moment, even with
    ``SIGKILL``, leaves the last complete state and loses at most the epochs since. Rerunning the same
    command finds the file, loads it on ``STARTED`` and logs ``"resuming from <file> at epoch N"``; the
    engine then continues with epoch N + 1 up to its own ``max_epochs`` (which may be larger than the first
    run's) and ends bit-identical to an uninterrupted run: the state holds the engine (epoch, iteration),
    everything in ``save_dict`` and every random generator (:class:`RandomStates`, entry ``random_states``).

    A changed length of the run is continued correctly: an LR scheduler whose settings (e.g.
    ``PolynomialLR``'s ``total_iters = epochs × iterations per epoch``) differ from the saved ones keeps
    the new settings and its progress, its learning rate recomputed in closed form; a scheduler without a
    closed form is refused. Settings that make the saved state meaningless (``record``: the data set, the
    tile size, the batch size, the learning rate, the networks) are compared with the saved ones and a
    difference is refused, naming each and how to start afresh.

    An epoch shorter than the data (``epoch_length`` below the data loader's length, e.g. a fixed
    iteration budget over a large unannotated pool) continues Ignite's data iterator across epochs: the
    next epoch takes the next batches of the same shuffled pass. The state therefore also holds where the
    current pass began (its iteration and the random states just before its iterator was made, entry
    ``data_pass``); a resume inside a pass makes the pass's iterator again from those states and draws the
    batches it had given (loading them, without training on them), then restores the saved states, so the
    run goes on with the very batches an uninterrupted one takes. This holds when no handler draws random
    numbers between the engine's ``EPOCH_STARTED`` or ``DATALOADER_STOP_ITERATION`` handlers of this one
    (attached last, when the run starts) and the iterator's creation, and for loaders whose workers start
    with each iterator: not with ``persistent_workers=True`` (the workers' generators are not saved) nor
    MONAI's ``ThreadDataLoader`` (its thread makes the next batch while the states are restored).

    The handler holds the state file's folder with a :class:`~monai_coco.folder_lock.FolderLock` (the
    first process only, in distributed training), so a second run on the same folder is refused, and
    removes the temporary files that a killed run's writes left there. :meth:`check` does all of that and
    reads the file; a bundle calls it among its prerequisites to stop with one line (``exit_on_error``),
    otherwise it runs when the handler is attached.

    Args:
        path: the training-state file, e.g. ``models/train_state.pt``.
        save_dict: ``{name: obj}`` for everything else to keep: model, optimiser, LR scheduler, the
            ``AdversarialDistillationHandler`` (critic, its optimiser and scaler), the best-model saver, ...
        save_interval: save every this many epochs.
        engine_key: the entry that holds the engine's state (epoch, iteration).
        record: what the run trains on, e.g. ``{"dataset": ..., "roi_size": [256, 256], "batch_size": 2}``:
            values made of strings, numbers, lists and dicts, stored in the file and compared on resume.
        name: logger name; defaults to the engine's logger.
        map_location: passed to ``torch.load``.

    Raises:
        ValueError: from :meth:`check` (one line, naming the file): unreadable or unsafe file, another
            run on the folder, a changed ``record``, a state that does not fit an object. From
            :meth:`resume`: a saved epoch beyond ``max_epochs``, another number of iterations per epoch,
            a scheduler that cannot be continued on the new settings.

    Example (bundle config)::

        {"_target_": "ResumableCheckpoint", "path": "$@bundle_root + '/models/train_state.pt'",
         "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr": "@lr_scheduler",
                       "adversarial": "@adversarial"}, "record": {"roi_size": "@roi_size"}}
    """

    random_key = "random_states"
    record_key = "record"
    pass_key = "data_pass"

    def __init__(
        self,
        path: str | os.PathLike,
        save_dict: Mapping[str, Any],
        save_interval: int = 1,
        engine_key: str = "trainer",
        record: Mapping[str, Any] | None = None,
        name: str | None = None,
        map_location: Any = "cpu",
    ) -> None:
        if save_interval < 1:
            raise ValueError(f"save_interval must be a positive number of epochs, got {save_interval!r}.")
        for key in (engine_key, self.random_key, self.record_key):
            if key in save_dict:
                raise ValueError(f"save_dict must not use the key '{key}': the handler's own entry.")
        self.path = Path(path)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.engine_key = engine_key
        self.record = _plain(dict(record or {}))
        self.map_location = map_location
        self.logger = logging.getLogger(name)
        self._name = name
        self._lock = FolderLock(self.path.parent, purpose=f"the training run writing {self.path.name}")
        self._checked = False
        self._saved: Mapping[str, Any] | None = None
        self._pass: dict[str, Any] | None = None  # where the data iterator's current pass began
        self._first_pass_pending = False

    def check(self) -> ResumableCheckpoint:
        """:func:`check_training_state` of this handler's file and record, once; the saved state is kept for
        :meth:`resume`. The run holds the folder's lock from ``STARTED``.

        Returns:
            this handler.

        Raises:
            ValueError: one line naming the file (see the class).
        """
        if not self._checked:
            self._saved = check_training_state(self.path, self.record, self.engine_key, self.map_location)
            self._checked = True
        return self

    def attach(self, engine: Engine) -> None:
        """Check (:meth:`check`) now; lock the folder and resume on ``STARTED``; save on every
        ``save_interval``-th epoch; release the folder when the run completes or is terminated (or when
        its process ends, in any way)."""
        if self._name is None:
            self.logger = engine.logger
        self.check()
        engine.add_event_handler(Events.STARTED, self.resume)
        engine.add_event_handler(Events.STARTED, self._follow_data_passes)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.save)
        engine.add_event_handler(Events.COMPLETED | Events.TERMINATE, lambda _: self._lock.release())

    def _objects(self, engine: Engine) -> dict[str, Any]:
        return {**self.save_dict, self.engine_key: engine, self.random_key: _random_states(engine)}

    def resume(self, engine: Engine) -> None:
        """Lock the folder; load the checked training state if there is one; keep the engine's own
        ``max_epochs``."""
        if _rank() == 0:
            self._lock.acquire()
        self.check()
        self._pass, self._first_pass_pending = None, True
        if self._saved is None:
            self.logger.info(f"no training state at {self.path}: starting from epoch 0")
            return
        saved_pass = self._saved.get(self.pass_key)
        max_epochs, epoch_length = engine.state.max_epochs, engine.state.epoch_length
        schedulers = {k: v.state_dict() for k, v in self.save_dict.items() if _is_scheduler(v)}
        optimizers = {k: _hyperparameters(v) for k, v in self.save_dict.items() if _is_optimizer(v)}
        objects = self._objects(engine)
        saved_states = self._saved.get(self.random_key)
        if saved_states is None:  # a state from older code: no random states to restore
            objects.pop(self.random_key)
            self.logger.warning(
                f"{self.path} holds no random states (older code): the run goes on from this process's "
                "generators (not bit-identical)."
            )
        elif not saved_states["transforms"] and (n := len(objects[self.random_key].transforms())):
            self.logger.warning(
                f"{self.path} holds the random states of none of the data's {n} random transforms (older "
                "code kept none for a data set made of several, e.g. annotated tiles and an unannotated "
                "pool): they go on from their fresh states (not bit-identical)."
            )
        load_checkpoint(self.path, objects, map_location=self.map_location)
        self._saved = None  # free the memory; the objects hold the state now
        if max_epochs is not None and engine.state.epoch > max_epochs:
            raise ValueError(
                f"{self.path} was saved at epoch {engine.state.epoch}, beyond max_epochs={max_epochs}: "
                "raise max_epochs to train on, or remove the file to start again."
            )
        if epoch_length is not None and engine.state.epoch_length != epoch_length:
            raise ValueError(
                f"{self.path} was saved with {engine.state.epoch_length} iterations per epoch, the training "
                f"data now give {epoch_length}: the data set or batch size changed; delete {self.path} to "
                "start afresh."
            )
        engine.state.max_epochs = max_epochs
        for key, fresh in optimizers.items():
            saved = _hyperparameters(self.save_dict[key])
            if saved != fresh:
                changed = ", ".join(
                    f"{k} {saved[i].get(k)} -> {v}" for i, g in enumerate(fresh) for k, v in g.items()
                    if i < len(saved) and saved[i].get(k) != v
                ) or "its parameter groups"  # fmt: skip
                raise ValueError(
                    f"{self.path} was saved with other optimizer settings for '{key}' ({changed}); rerun "
                    f"with the first run's settings to resume, or delete {self.path} to start afresh."
                )
        for key, fresh in schedulers.items():
            self._continue_schedule(key, self.save_dict[key], fresh)
        self.logger.info(f"resuming from {self.path} at epoch {engine.state.epoch}")
        if saved_pass is not None:
            self._replay_pass(engine, saved_pass)
        elif (length := _length(engine.state.dataloader)) is not None and engine.state.epoch_length < length:
            self.logger.warning(
                f"{self.path} was saved by older code, without where its pass over the data began "
                f"(epoch_length {engine.state.epoch_length} is shorter than the data's {length} batches): "
                "this run goes on with other batches than an uninterrupted one (not bit-identical)."
            )

    def _replay_pass(self, engine: Engine, saved_pass: Mapping[str, Any]) -> None:
        """Inside a pass over the data (``0 <`` batches drawn ``<`` the data's length): make its iterator
        again from the random states saved when it was made, draw the batches it gave, restore the run's
        states. At the end of a pass too when the loader or its sampler shuffles with a ``torch.Generator``
        of its own: the uninterrupted run's exhausted sampler draws from it once more (torch's
        ``RandomSampler``) before the next pass's iterator is made. Otherwise, at the end of a pass, Ignite's
        own next iterator is the uninterrupted run's."""
        data = engine.state.dataloader
        drawn = engine.state.iteration - int(saved_pass["iteration"])
        length = _length(data)
        states = _random_states(engine)
        if length is None or not (0 < drawn < length or (drawn == length and states.has_generators())):
            return
        now = states.state_dict()
        states.load_state_dict(saved_pass["random_states"])
        sampler = getattr(data, "sampler", None)
        if "sampler_epoch" in saved_pass:  # a DistributedSampler shuffles by seed + its epoch
            sampler.set_epoch(int(saved_pass["sampler_epoch"]))
        engine.set_data(data)  # Ignite's iterator, made as the pass's was
        for _ in range(drawn):
            next(engine._dataloader_iter)  # the batches the pass gave before the state was saved
        states.load_state_dict(now)
        self._pass, self._first_pass_pending = dict(saved_pass), False
        self.logger.info(
            f"{self.path}: drew again the {drawn} of {length} batches the data pass had given before it was "
            "saved (epoch_length is shorter than the data), so the run goes on with the same batches"
        )

    def _follow_data_passes(self, engine: Engine) -> None:
        """Attach, once and after every other handler, the two marks of a new pass over the data: the
        run's first iterator (made after ``EPOCH_STARTED``) and each next one (after
        ``DATALOADER_STOP_ITERATION``)."""
        for event, mark in ((Events.EPOCH_STARTED, self._mark_first_pass),
                            (Events.DATALOADER_STOP_ITERATION, self._mark_pass)):  # fmt: skip
            if not engine.has_event_handler(mark, event):
                engine.add_event_handler(event, mark)

    def _mark_first_pass(self, engine: Engine) -> None:
        if self._first_pass_pending:
            self._first_pass_pending = False
            self._mark_pass(engine)

    def _mark_pass(self, engine: Engine) -> None:
        states = _random_states(engine).state_dict()
        self._pass = {"iteration": engine.state.iteration, "random_states": states}
        sampler = getattr(engine.state.dataloader, "sampler", None)
        epoch = getattr(sampler, "epoch", None)
        if callable(getattr(sampler, "set_epoch", None)) and isinstance(epoch, int):
            self._pass["sampler_epoch"] = epoch

    def _continue_schedule(self, key: str, scheduler: Any, fresh: Mapping[str, Any]) -> None:
        """Give a restored scheduler (or each scheduler of a ``ChainedScheduler``) the settings it was built
        with now, keeping its progress; the learning rate is recomputed in closed form (for a chain: the
        base rate times each scheduler's factor)."""
        chained = isinstance(scheduler, torch.optim.lr_scheduler.ChainedScheduler)
        parts = list(zip(scheduler._schedulers, fresh["_schedulers"])) if chained else [(scheduler, fresh)]
        changes = []
        for part, new in parts:
            saved = part.state_dict()
            changes.append({
                k: (saved.get(k), v) for k, v in new.items() if k not in _PROGRESS and saved.get(k) != v
            })
        if not any(changes):
            return
        shown = ", ".join(f"{k} {old} -> {new}" for changed in changes for k, (old, new) in changed.items())
        if not all(hasattr(part, "_get_closed_form_lr") for part, _ in parts):
            raise ValueError(
                f"{self.path}: the LR scheduler '{key}' ({type(scheduler).__name__}) was saved with other "
                f"settings ({shown}) and has no closed form to continue on the new ones; rerun with the "
                f"first run's settings, or delete {self.path} to start afresh."
            )
        for (part, _), changed in zip(parts, changes):
            for k, (_, new) in changed.items():
                setattr(part, k, new)
        base = [group.get("initial_lr", group["lr"]) for group in scheduler.optimizer.param_groups]
        lrs = list(base)
        for part, _ in parts:  # each closed form is base × its own factor
            factors = [closed / b if b else 0.0 for closed, b in zip(part._get_closed_form_lr(), base)]
            lrs = [lr * factor for lr, factor in zip(lrs, factors)]
        for group, lr in zip(scheduler.optimizer.param_groups, lrs):
            group["lr"] = lr
        for part in [scheduler] + [p for p, _ in parts]:
            part._last_lr = list(lrs)
        self.logger.info(f"LR scheduler '{key}' continues on the new settings ({shown}); learning rate {lrs}")

    def save(self, engine: Engine) -> None:
        """Write the training state atomically (on the first process only, in distributed training)."""
        if _rank() != 0:
            return
        objects = {**self._objects(engine), self.record_key: _Stored(self.record)}
        if self._pass is not None:
            objects[self.pass_key] = _Stored(self._pass)
        save_checkpoint(self.path, objects)
        self.logger.info(f"saved training state at epoch {engine.state.epoch} to {self.path}")


def _length(data: Any) -> int | None:
    """The number of batches of ``data``, or ``None`` (a ``DataLoader`` over an ``IterableDataset`` has
    ``__len__`` but may raise ``TypeError``, as Ignite allows)."""
    try:
        return len(data) if isinstance(data, Sized) else None
    except TypeError:
        return None


def _random_states(engine: Engine) -> RandomStates:
    """The generators of the engine's training data loader (a MONAI workflow's ``data_loader``)."""
    return RandomStates(getattr(engine, "data_loader", None) or engine.state.dataloader)


def _is_optimizer(obj: Any) -> bool:
    return isinstance(obj, torch.optim.Optimizer)


def _hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's settings: ``initial_lr`` (the learning rate a schedule started from; else
    ``lr``), weight decay, momentum, betas, ... (not the parameters, nor the scheduled ``lr``)."""
    groups = []
    for group in optimizer.param_groups:
        settings = {k: v for k, v in group.items() if k not in ("params", "lr", "initial_lr")}
        settings["lr"] = group.get("initial_lr", group["lr"])
        groups.append(settings)
    return groups


def _is_scheduler(obj: Any) -> bool:
    return isinstance(obj, torch.optim.lr_scheduler.LRScheduler)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists, paths as strings and tensors/numpy numbers as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return value


class _Stored:
    """A mapping (the ``record``, the ``data_pass``) as an object with ``state_dict`` (what
    ``save_checkpoint`` takes)."""

    def __init__(self, content: Mapping[str, Any]) -> None:
        self.content = content

    def state_dict(self) -> Mapping[str, Any]:
        return self.content
