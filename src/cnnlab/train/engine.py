"""The training engine: one optimizer step, one epoch, one evaluation pass.

A few small functions in the manner of torchvision's reference scripts; :func:`cnnlab.train.fit`
strings them together with checkpoints and a run folder. Batches come from any loader that
yields ``(x, y)`` on the device (the in-memory DeviceLoader or the streaming ShardLoader).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from cnnlab.layers.shape_infer import eval_mode
from cnnlab.train.device import autocast
from cnnlab.train.metrics import MetricSums
from cnnlab.train.stop import StopFlag, StopReason


@dataclass
class TrainStep:
    """Everything one optimizer step needs; calling it trains on one batch.

    Attributes:
        model: the (possibly compiled or DDP-wrapped) model.
        optimizer, loss_fn: as usual.
        device: where batches live (for autocast).
        scheduler: stepped after every optimizer step (per-step schedules).
        scaler: gradient scaler for fp16, else None.
        precision: "fp32", "bf16" or "fp16".
        grad_clip: max gradient norm, or None.
        release: undoes what building the step did to the model (`close` calls it).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    scaler: torch.amp.GradScaler | None = None
    precision: str = "fp32"
    grad_clip: float | None = None
    release: Callable[[], None] | None = None

    def close(self) -> None:
        """Give the model its own forward passes back (see ``TrainConfig.pool_first``)."""
        if self.release is not None:
            self.release()
            self.release = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, backward, step; returns the detached (loss, logits)."""
        with autocast(self.device, self.precision):
            logits = self.model(x)  # (B, K)
            loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self._clip()
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach(), logits.detach()

    def _clip(self) -> None:
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)

    @property
    def lr(self) -> float:
        """The first parameter group's current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])


@dataclass
class EpochResult:
    """How an epoch (or its interrupted part) went.

    Attributes:
        metrics: loss/accuracy/top5 of the training batches (averaged over processes).
        steps: steps of this epoch done, counting any done before a resume.
        images: images trained on in this call (this process).
        seconds: wall time of this call.
        status: None to go on; else why training stops (INTERRUPTED: a stop was requested,
            MAX_STEPS, NONFINITE), which may fall on the epoch's last step.
        bad_step: 1-based step of the epoch whose loss was not finite.
        bad_loss: that loss value.
    """

    metrics: dict[str, float]
    steps: int
    images: int
    seconds: float
    status: StopReason | None = None
    bad_step: int | None = None
    bad_loss: float | None = None


@dataclass
class EpochControl:
    """How often the loop looks up from the device, and what may end an epoch early.

    Attributes:
        check_every: steps between checks of the loss (finite?), stop requests and the bar;
            each check waits for the device, so on CUDA it is not done every step.
        stop: stop flag set by signals or callbacks.
        step_budget: optimizer steps left for the run (``max_steps``), or None.
        on_update: called at each check with (steps done, the running MetricSums, images).
        on_step: called after every step with (step, loss); for tests and custom hooks.
    """

    check_every: int = 1
    stop: StopFlag | None = None
    step_budget: int | None = None
    on_update: Callable[[int, MetricSums, int], None] | None = None
    on_step: Callable[[int, torch.Tensor], None] | None = None
    _pending: list[torch.Tensor] = field(default_factory=list, repr=False)


def _first_nonfinite(losses: list[torch.Tensor]) -> tuple[int, float] | None:
    """(index, value) of the first non-finite loss in ``losses`` (one device sync), or None."""
    stacked = torch.stack(losses).float()
    finite = torch.isfinite(stacked)
    if bool(finite.all()):
        return None
    index = int((~finite).nonzero()[0, 0])
    return index, float(stacked[index])


def _agree(flags: list[int], device: torch.device) -> list[int]:
    """Element-wise max of ``flags`` over all processes, so every rank stops at the same step."""
    if not (dist.is_available() and dist.is_initialized()):
        return flags
    t = torch.tensor(flags, dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _check(ctrl: EpochControl, step: int, device: torch.device) -> tuple[StopReason | None, tuple]:
    """At a check point: (why to end the epoch, or None; (bad step, bad loss))."""
    bad = _first_nonfinite(ctrl._pending) if ctrl._pending else None
    first_bad = step - len(ctrl._pending) + 1 + bad[0] if bad is not None else 0
    ctrl._pending.clear()
    stop = int(ctrl.stop is not None and ctrl.stop.requested)
    budget = int(ctrl.step_budget is not None and ctrl.step_budget <= 0)
    flags = _agree([int(bad is not None), first_bad, stop, budget], device)
    if flags[0]:
        return StopReason.NONFINITE, (flags[1], bad[1] if bad is not None else float("nan"))
    if flags[2]:
        return StopReason.INTERRUPTED, (None, None)
    if flags[3]:
        return StopReason.MAX_STEPS, (None, None)
    return None, (None, None)


def train_one_epoch(
    step_fn: TrainStep,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sums: MetricSums,
    *,
    total_steps: int,
    start_step: int = 0,
    control: EpochControl | None = None,
) -> EpochResult:
    """Train on one epoch of ``batches``, skipping the first ``start_step`` (a resumed epoch).

    Args:
        step_fn: the optimizer step.
        batches: this epoch's ``(x, y)`` batches, in order.
        sums: running sums to add to (pre-filled when resuming mid-epoch).
        total_steps: batches in the epoch (for the checks on the last step).
        start_step: batches of this epoch already trained on before a resume; they are drawn
            from ``batches`` (keeping the data and augmentation streams aligned) and skipped.
        control: check cadence, stop flag, step budget and hooks.

    Returns:
        The epoch's result; ``status`` says whether it ran to the end.
    """
    ctrl = control or EpochControl()
    step_fn.model.train()  # a TransferModel keeps a frozen backbone's BatchNorm in eval
    start, images, step = time.perf_counter(), 0, start_step
    status, bad = None, (None, None)
    for index, (x, y) in enumerate(batches):
        if index < start_step:
            continue
        loss, logits = step_fn(x, y)
        sums.update(logits, y, loss)
        step, images = index + 1, images + y.shape[0]
        ctrl._pending.append(loss)
        if ctrl.step_budget is not None:
            ctrl.step_budget -= 1
        if ctrl.on_step is not None:
            ctrl.on_step(step, loss)
        if step % ctrl.check_every == 0 or step == total_steps or ctrl.step_budget == 0:
            reason, bad = _check(ctrl, step, step_fn.device)
            if ctrl.on_update is not None:
                ctrl.on_update(step, sums, images)
            if reason is not None:
                status = reason
                break
    ctrl._pending.clear()
    total = sums.copy()
    total.all_reduce()  # the epoch's figures are over all processes; `sums` stays per-rank
    seconds = time.perf_counter() - start
    return EpochResult(total.result(), step, images, seconds, status, *bad)


@dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes:
        metrics: ``loss``, ``accuracy`` and (more than 5 classes) ``top5``.
        targets, predictions, losses, probs: per-sample CPU tensors in loader order, when
            asked for with ``keep_outputs=True``.
    """

    metrics: dict[str, float]
    targets: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    losses: torch.Tensor | None = None
    probs: torch.Tensor | None = None


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    num_classes: int,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    keep_outputs: bool = False,
) -> Evaluation:
    """Loss and accuracy of ``model`` on ``batches``, in eval mode (modes restored after).

    Args:
        model: the model (not DDP-wrapped: every process evaluates the whole split).
        batches: ``(x, y)`` batches on ``device``.
        num_classes: the model's classes (top-5 is reported when > 5).
        device: where the batches are.
        precision: autocast precision of the forward pass.
        keep_outputs: also return per-sample targets, predictions, losses and probabilities.
    """
    device = torch.device(device)
    sums = MetricSums(device, num_classes)
    kept: list[tuple[torch.Tensor, ...]] = []
    with eval_mode(model):
        for x, y in batches:
            with autocast(device, precision):
                logits = model(x).float()  # (B, K)
            losses = nn.functional.cross_entropy(logits, y, reduction="none")
            sums.update(logits, y, losses.mean())
            if keep_outputs:
                kept.append((y, logits.argmax(1), losses, logits.softmax(1)))
    result = Evaluation(sums.result())
    if keep_outputs and kept:
        y, pred, losses, probs = (torch.cat(parts).cpu() for parts in zip(*kept, strict=True))
        result.targets, result.predictions, result.losses, result.probs = y, pred, losses, probs
    return result
