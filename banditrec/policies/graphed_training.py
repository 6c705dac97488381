"""Online training rounds replayed from a CUDA graph: one launch per round instead of dozens per step.

Why: the online schedule makes many tiny minibatch steps (by default one Adam step of 64 rows per
decision). On a GPU such a step costs its kernel launches, not its arithmetic: a few dozen
launches of microseconds of work each (1.7 ms per step on an H200, slower than a 2-core CPU).
Captured once, a whole round of ``train_steps`` steps replays as a single graph — the minibatch
gather from the replay buffer (preallocated, so its addresses never move), forward pass, loss,
backward pass, gradient clipping and the optimizer update — reading each step's row indices and
learning rate from static device tensors that are filled before the replay.

The first round runs eagerly, on a side stream: it is real training (the same steps in the same
order) and also creates the optimizer's state and the CUDA libraries' workspaces, which must exist
before capture. The graph is captured at the second round and replayed from then on. Numbers
differ from eager CUDA training only by rounding (capturable optimizers compute their bias
corrections on the device); the CPU never takes this path.

Needs an optimizer that can read a tensor learning rate inside a graph: ``adam`` and ``rmsprop``
(built with ``capturable=True``) and ``rmsprop_tf``. A model whose forward pass reads values on the
host (``.item()``, ``int(tensor)``, data-dependent shapes) cannot be captured; with
``cuda_graph="auto"`` such a model falls back to eager steps with a warning.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["GRAPH_OPTIMIZERS", "CapturedRounds", "eager_round", "set_lr"]

GRAPH_OPTIMIZERS = ("adam", "rmsprop", "rmsprop_tf")

Step = Callable[[torch.Tensor], torch.Tensor]  # (batch_size,) row indices -> detached scalar loss


def set_lr(optimizer: torch.optim.Optimizer, lr: float | torch.Tensor) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def eager_round(optimizer: torch.optim.Optimizer, step: Step, indices: torch.Tensor, lrs: Sequence[float]) -> torch.Tensor:
    """``len(lrs)`` steps, step s on rows ``indices[s]`` at learning rate ``lrs[s]``; the losses."""
    losses = []
    for index, lr in zip(indices, lrs):
        set_lr(optimizer, lr)
        losses.append(step(index))
    return torch.stack(losses)


def _eager_round_of_capturable(optimizer, step: Step, indices: torch.Tensor, lrs: Sequence[float]) -> torch.Tensor:
    """:func:`eager_round` for an optimizer built for capture (the warm-up round, or after a failed
    capture), without torch's warning that a capturable optimizer is stepping outside a graph."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
        return eager_round(optimizer, step, indices, lrs)


class CapturedRounds:
    """Runs training rounds of a fixed shape (steps × batch_size) from one captured CUDA graph.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Built with ``capturable=True`` where the class has that option.
    step : callable
        One training step on the given row indices, returning the detached loss; the same function
        the eager path runs.
    steps, batch_size : int
        The round's shape.
    device : torch.device
        A CUDA device.
    required : bool
        Raise (instead of warning and training eagerly) when the round cannot be captured.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, step: Step, steps: int, batch_size: int,
                 device: torch.device, required: bool = False) -> None:
        self.optimizer, self.step, self.required = optimizer, step, required
        self.indices = torch.zeros((steps, batch_size), dtype=torch.int64, device=device)
        self.lrs = torch.zeros(steps, dtype=torch.float32, device=device)
        self.stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.losses: torch.Tensor | None = None
        self.warmed_up = False
        self.failed = False

    def __deepcopy__(self, memo: dict) -> CapturedRounds:
        """A copy for the copied estimator: its own optimizer and step, warmed up and captured afresh
        (a graph and a stream cannot be copied)."""
        steps, batch_size = self.indices.shape
        return CapturedRounds(copy.deepcopy(self.optimizer, memo), copy.deepcopy(self.step, memo), steps,
                              batch_size, self.indices.device, self.required)

    def __call__(self, indices: np.ndarray, lrs: Sequence[float]) -> torch.Tensor:
        """One round: rows ``indices`` (steps, batch_size), learning rates ``lrs``; the losses."""
        self.indices.copy_(torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64)))
        if self.failed:
            return _eager_round_of_capturable(self.optimizer, self.step, self.indices, lrs)
        if not self.warmed_up:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                losses = _eager_round_of_capturable(self.optimizer, self.step, self.indices, lrs)
            torch.cuda.current_stream().wait_stream(self.stream)
            self.warmed_up = True
            return losses
        self.lrs.copy_(torch.tensor(list(lrs), dtype=torch.float32))
        if self.graph is None and not self._capture():
            return _eager_round_of_capturable(self.optimizer, self.step, self.indices, lrs)
        self.graph.replay()
        set_lr(self.optimizer, lrs[-1])  # what an eager round leaves, for state_dict()
        return self.losses

    def _capture(self) -> bool:
        graph = torch.cuda.CUDAGraph()
        saved = [group["lr"] for group in self.optimizer.param_groups]
        self.optimizer.zero_grad(set_to_none=True)
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                losses = []
                for s in range(self.indices.shape[0]):
                    set_lr(self.optimizer, self.lrs[s])  # a view: the replay reads lrs[s] as it is then
                    losses.append(self.step(self.indices[s]))
                self.losses = torch.stack(losses)
        except Exception as err:
            if self.required:
                raise RuntimeError(
                    "could not capture the training round in a CUDA graph (cuda_graph='on'): "
                    f"{type(err).__name__}: {err}. A model whose forward pass reads tensor values on "
                    "the host cannot be captured; use cuda_graph='auto' or 'off'"
                ) from err
            warnings.warn(
                f"training round not captured in a CUDA graph ({type(err).__name__}: {err}); "
                "training eagerly from now on",
                RuntimeWarning,
                stacklevel=3,
            )
            self.failed = True
            self.graph = self.losses = None
            return False
        finally:
            for group, lr in zip(self.optimizer.param_groups, saved):
                group["lr"] = lr
        self.graph = graph
        return True
