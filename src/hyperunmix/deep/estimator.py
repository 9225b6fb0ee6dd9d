"""The base class of the deep methods: one order of steps, one checkpoint format, one history.

:meth:`DeepUnmixer._fit` runs, for every deep method, in this order: the device
(``device``, checked), seeding (a local generator, and torch's global state forked so
that the caller's random state is left as it was), the input scale
(:meth:`~DeepUnmixer._input_scale`), then the method's :meth:`~DeepUnmixer._build` (what
the training needs from the scene: references, pseudo-pure sets, bundles), the network
(:meth:`~DeepUnmixer._network`, built from fitted attributes only, so that :meth:`load`
rebuilds it the same way), :meth:`~DeepUnmixer._train` (which reports every epoch through
:meth:`~DeepUnmixer._record_epoch`: history, the non-finite-loss guard, progress and the
decision to stop: a loss plateau, see :func:`plateau_reached`, or the time budget) and
:meth:`~DeepUnmixer._finish`.

A checkpoint holds the network's weights, the fitted attributes the class declares
(``_checkpoint_arrays`` as tensors, ``_checkpoint_values`` as JSON) and the
hyper-parameters (arrays among them as tensors), and loads with
``torch.load(weights_only=True)``: no pickled Python objects.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import numpy as np
import torch

from ..base import Unmixer
from ..errors import ConvergenceWarning
from ..params import Boolean, Integer, NoneValue, Options, Real, Rule
from ..scene import Scene
from ._common import AUTO_DEVICE, load_checkpoint, rebuilding, resolve_device, save_checkpoint

if TYPE_CHECKING:
    from collections.abc import Sequence

    from typing_extensions import Self

log = logging.getLogger("hyperunmix")

#: Version of the checkpoint layout; a file of another version is refused with a clear error.
CHECKPOINT_VERSION = 2


class Device(Rule):
    """``"auto"`` (CUDA when present, else the CPU), None (the CPU), a ``torch.device`` or
    a string that names one (``"cuda:0"``)."""

    def admits(self, value: Any) -> bool:
        if value is None or isinstance(value, torch.device):
            return True
        if isinstance(value, str) and value.lower() == AUTO_DEVICE:
            return True
        try:
            torch.device(value)
        except (RuntimeError, TypeError):
            return False
        return True

    def __str__(self) -> str:
        return '"auto", None, "cpu", "cuda" or another torch device'

    def invalid_example(self) -> Any:
        return "gpu"


#: Rules of ``device``, ``max_seconds`` and the early-stopping parameters, the same for every
#: deep method.
DEVICE_RULES: list[Rule] = [Device()]
MAX_SECONDS_RULES: list[Rule] = [Real(0, closed="neither"), NoneValue()]
Precision = Literal["float32", "mixed"]
#: The values of ``precision``: float32 throughout, or float16 autocast at inference on CUDA.
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
PRECISION_RULES: list[Rule] = [Options(*PRECISIONS)]
EARLY_STOPPING_RULES: list[Rule] = [Boolean()]
PATIENCE_RULES: list[Rule] = [Integer(1)]
MIN_DELTA_RULES: list[Rule] = [Real(0)]


def plateau_reached(losses: Sequence[float], patience: int, min_delta: float) -> bool:
    """Whether a training loss has stopped falling: the mean of its last ``patience``
    values is less than ``min_delta`` (relative) below the mean of the ``patience`` values
    before them. Never before ``2 * patience`` values.

    The means smooth a noisy loss (mini-batches, dropout, sampled terms); a rise counts as
    no fall. With ``patience`` 3 and ``min_delta`` 0.01, a loss that falls by less than
    1 % from epochs 4-6 to epochs 7-9 has plateaued at epoch 9:

    >>> plateau_reached([5.0, 4.0, 3.0, 2.5, 2.4, 2.3, 2.29, 2.28, 2.27], 3, 0.01)
    True
    >>> plateau_reached([5.0, 4.0, 3.0, 2.5, 2.4, 2.3, 2.2, 2.1, 2.0], 3, 0.01)
    False
    """
    if len(losses) < 2 * patience:
        return False
    recent = math.fsum(losses[-patience:]) / patience
    before = math.fsum(losses[-2 * patience : -patience]) / patience
    return before - recent < min_delta * abs(before)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[torch.Generator]:
    """A CPU generator seeded with ``seed``, for shuffling and sampling, while torch's global
    generators (which layer initialisation and dropout draw from) are seeded with it too
    and restored on exit: fitting leaves the caller's random state as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator().manual_seed(seed)


class DeepUnmixer(Unmixer):
    """Base class of EGU-Net, ID-Net and DEQ-Unmix.

    Subclasses take ``epochs``, ``learning_rate``, ``endmembers``, ``seed``, ``device``,
    ``max_seconds`` (a time budget for the training) and ``early_stopping``, ``patience``
    and ``min_delta`` (stop on a loss plateau, :func:`plateau_reached`) among their
    parameters and implement :meth:`_input_scale`, :meth:`_build`, :meth:`_network` and
    :meth:`_train` (and :meth:`_finish` when something follows the training).

    Attributes
    ----------
    network_ : torch.nn.Module or None
        The trained network (None for a method variant without one).
    input_scale_ : float
        The scene's values are multiplied by it before they enter the network.
    history_ : list of dict
        One record per epoch: ``epoch`` (from 1), ``loss`` and the method's own terms.
    n_epochs_ : int
        Epochs trained (0 for a method variant without a network).
    stop_reason_ : {"epochs", "plateau", "max_seconds"} or None
        Why training ended: all ``epochs`` run, the loss plateau (early stopping), the
        time budget; None without a network.
    n_bands_ : int
    """

    #: Fitted attributes held as tensors in a checkpoint (NumPy arrays).
    _checkpoint_arrays: ClassVar[tuple[str, ...]] = ()
    #: Fitted attributes held as JSON in a checkpoint (besides n_bands_, input_scale_,
    #: history_, n_epochs_ and stop_reason_, which every deep method has).
    _checkpoint_values: ClassVar[tuple[str, ...]] = ()
    #: Old parameter name -> new one, accepted with a DeprecationWarning for one release.
    _renamed_params: ClassVar[dict[str, str]] = {}
    #: Old attribute name -> new one, readable with a DeprecationWarning for one release.
    _renamed_attributes: ClassVar[dict[str, str]] = {}
    #: Parameter added since checkpoints were first written -> the value that rebuilds the
    #: models of checkpoints without it (they were fitted before it existed), not its default.
    _added_params: ClassVar[dict[str, Any]] = {}

    seed: int
    device: str | torch.device | None
    precision: str
    max_seconds: float | None
    early_stopping: bool
    patience: int
    min_delta: float
    network_: torch.nn.Module | None
    input_scale_: float
    history_: list[dict[str, float]]
    n_epochs_: int
    stop_reason_: str | None

    # -- renamed parameters and attributes -------------------------------------------------
    def _take_renamed(self, renamed: dict[str, Any]) -> None:
        """Accept parameters under their old names (``__init__``'s ``**renamed``)."""
        for old, value in renamed.items():
            new = self._renamed_params.get(old)
            if new is None:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {old!r}"
                )
            warnings.warn(
                f"{type(self).__name__}: {old} is now called {new}; {old} will stop working "
                "in the next release",
                DeprecationWarning,
                stacklevel=3,
            )
            setattr(self, new, value)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: old attribute names.
        new = type(self)._renamed_attributes.get(name)
        if new is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(
            f"{type(self).__name__}.{name} is now {new}", DeprecationWarning, stacklevel=2
        )
        return getattr(self, new)

    # -- fit ---------------------------------------------------------------------------------
    def _fit(self, scene: Scene) -> None:
        device = resolve_device(self.device)
        pixels = scene.pixels(np.float64)
        with seeded(self.seed, device) as generator:
            self.n_bands_ = scene.n_bands
            self.input_scale_ = self._input_scale(pixels)
            built = self._build(scene, pixels, generator)
            network = self._network()
            self.network_ = None if network is None else network.to(device)
            self.history_ = []
            self.stop_reason_ = None
            if self.network_ is not None:
                self.network_.train()
                self._training_started = time.perf_counter()
                self.stop_reason_ = "epochs"
                self._train(scene, pixels, generator, built)
                self.network_.eval()
            self.n_epochs_ = len(self.history_)
            self._finish(scene, pixels)

    @abc.abstractmethod
    def _input_scale(self, pixels: np.ndarray) -> float:
        """The factor that brings the (N, L) training ``pixels`` to the network's range."""

    def _build(self, scene: Scene, pixels: np.ndarray, generator: torch.Generator) -> Any:
        """Set the fitted attributes that :meth:`_network` needs; return what
        :meth:`_train` needs beyond the scene (a pseudo-pure set, bundles), or None."""
        return None

    @abc.abstractmethod
    def _network(self) -> torch.nn.Module | None:
        """The untrained network, from fitted attributes only (``load`` calls it too)."""

    @abc.abstractmethod
    def _train(
        self, scene: Scene, pixels: np.ndarray, generator: torch.Generator, built: Any
    ) -> None:
        """Train ``network_`` (in training mode) on the scene, its valid ``pixels`` (N, L)
        and what :meth:`_build` returned, calling :meth:`_record_epoch` after every epoch."""

    def _finish(self, scene: Scene, pixels: np.ndarray) -> None:
        """What follows the training (endmember estimates, statistics); nothing by default."""

    def _record_epoch(
        self, epoch: int, total: int, loss: float, *, complete: bool = True, **terms: float
    ) -> bool:
        """Record epoch ``epoch`` (from 1) of at most ``total`` in ``history_`` and report it;
        a FloatingPointError when the loss is not finite (training diverged).

        Returns whether training may go on (the caller stops when it is False): False
        before the last epoch once the loss has plateaued (``early_stopping``, see
        :func:`plateau_reached`), logged, or once the time budget ``max_seconds`` is spent,
        with a ConvergenceWarning. ``stop_reason_`` says which; the progress report of the
        last epoch says it too (``stop=...``). ``complete=False``: the caller cut the epoch
        short because :meth:`_time_spent` (a method whose epochs are long checks it after
        every step), so training stops for ``max_seconds`` whatever the epoch.
        """
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"{type(self).__name__} training diverged at epoch {epoch} (loss {loss}); "
                "lower learning_rate"
            )
        record = {"epoch": epoch, "loss": float(loss), **{k: float(v) for k, v in terms.items()}}
        self.history_.append(record)
        if not complete:
            stop: str | None = "max_seconds"
        else:
            stop = None if epoch >= total else self._stop_reason()
        info = {k: v for k, v in record.items() if k != "epoch"}
        self._report("epoch", epoch, total, **info, **({"stop": stop} if stop else {}))
        if stop is None:
            return True
        self.stop_reason_ = stop
        if stop == "plateau":
            log.info(
                "%s stopped training after epoch %d of %d: the loss fell by less than %g "
                "(relative) over the last %d epochs",
                type(self).__name__,
                epoch,
                total,
                self.min_delta,
                self.patience,
            )
        else:
            warnings.warn(
                f"{type(self).__name__} stopped training after epoch {epoch} of {total}"
                f"{'' if complete else ' (cut short)'}: "
                f"max_seconds={self.max_seconds:g} was spent "
                f"({time.perf_counter() - self._training_started:.1f} s); the model is usable "
                "but may not have finished learning",
                ConvergenceWarning,
                stacklevel=2,
            )
        return False

    def _stop_reason(self) -> str | None:
        """``"plateau"``, ``"max_seconds"`` or None (go on), after an epoch before the last."""
        losses = [record["loss"] for record in self.history_]
        if self.early_stopping and plateau_reached(losses, self.patience, self.min_delta):
            return "plateau"
        return "max_seconds" if self._time_spent() else None

    def _time_spent(self) -> bool:
        """Whether the training's time budget ``max_seconds`` is spent (never without one)."""
        elapsed = time.perf_counter() - self._training_started
        return self.max_seconds is not None and elapsed > self.max_seconds

    # -- inference ---------------------------------------------------------------------------
    def transform(self, cube: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        with self._inference():
            return super().transform(cube, mask)

    transform.__doc__ = Unmixer.transform.__doc__

    def _inference(self) -> contextlib.ExitStack:
        """The context of every forward pass at inference: no autograd graph and, with
        ``precision="mixed"`` on a CUDA device, float16 autocast (a no-op on the CPU,
        where the maps are float32's)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        device = resolve_device(self.device)
        if self.precision == "mixed" and device.type == "cuda":
            stack.enter_context(torch.autocast("cuda", dtype=torch.float16))
        return stack

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted model to ``path`` (weights only, no pickled objects); returns it."""
        self._check_fitted()
        state: dict[str, torch.Tensor] = {}
        if self.network_ is not None:
            state.update({f"network.{k}": v for k, v in self.network_.state_dict().items()})
        for name in self._checkpoint_arrays:
            state[f"fitted.{name}"] = torch.as_tensor(np.asarray(getattr(self, name)))
        params: dict[str, Any] = {}
        unsaved: list[str] = []
        for name, value in self.get_params().items():
            if isinstance(value, np.ndarray):
                state[f"param.{name}"] = torch.as_tensor(value)
            elif isinstance(value, os.PathLike):
                params[name] = os.fspath(value)
            elif value is None or isinstance(value, (bool, int, float, str, list)):
                params[name] = value
            else:  # a library object: it served the fit, and has no JSON form
                params[name] = None
                unsaved.append(name)
        values = (
            "n_bands_",
            "input_scale_",
            "history_",
            "n_epochs_",
            "stop_reason_",
            *self._checkpoint_values,
        )
        config = {
            "method": self.name,
            "version": CHECKPOINT_VERSION,
            "params": params,
            "unsaved_params": unsaved,
            "fitted": {name: getattr(self, name) for name in values},
        }
        return save_checkpoint(path, state, config)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> Self:
        """A fitted model from a file written by :meth:`save`, on ``device`` (default: the
        one it was fitted with)."""
        state, config = load_checkpoint(path, cls.name)
        with rebuilding(path, cls.name):
            if config.get("version") != CHECKPOINT_VERSION:
                raise ValueError(
                    f"it was written by another version of hyperunmix (checkpoint layout "
                    f"{config.get('version', 1)}, this one reads {CHECKPOINT_VERSION}): "
                    "fit the model again"
                )
            params = {**cls._added_params, **config["params"]}
            for key in [k for k in state if k.startswith("param.")]:
                params[key.removeprefix("param.")] = state.pop(key).numpy()
            if device is not None:
                params["device"] = device
            model = cls(**params)
            for name, value in config["fitted"].items():
                setattr(model, name, value)
            for name in cls._checkpoint_arrays:
                setattr(model, name, state.pop(f"fitted.{name}").numpy())
            network = model._network()
            if network is not None:
                network.load_state_dict({k.removeprefix("network."): v for k, v in state.items()})
        if config["unsaved_params"]:
            warnings.warn(
                f"{path}: the parameters {', '.join(config['unsaved_params'])} were objects "
                "that a checkpoint does not hold; they are None in the loaded model, which "
                "unmixes as the saved one but needs them again to be fitted anew",
                UserWarning,
                stacklevel=2,
            )
        # A device error is not a file error: outside `rebuilding`.
        model.network_ = (
            None if network is None else network.to(resolve_device(model.device)).eval()
        )
        return model
