"""Running sums of loss and top-1/top-5 hits, kept on the device (no sync per step)."""

from __future__ import annotations

import torch
import torch.distributed as dist

# index of each sum in the state tensor
LOSS, TOP1, TOP5, COUNT = range(4)


class MetricSums:
    """Sums of one epoch's loss, top-1 and top-5 hits and sample count.

    The sums live in one small tensor on the training device, so updating them queues work
    without waiting for the GPU; :meth:`result` is the only point that reads them back.
    Top-5 is tracked when the model has more than 5 classes.
    """

    def __init__(self, device: torch.device | str, num_classes: int) -> None:
        device = torch.device(device)
        dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self.sums = torch.zeros(4, dtype=dtype, device=device)
        self.topk = num_classes > 5

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, K), ``targets`` (B,), ``loss`` the batch mean."""
        n = targets.shape[0]
        hits = torch.zeros(4, dtype=self.sums.dtype, device=self.sums.device)
        hits[LOSS] = loss.detach().to(hits.dtype) * n
        if self.topk:
            top = logits.topk(5, dim=1).indices  # (B, 5)
            match = top == targets[:, None]
            hits[TOP1] = match[:, 0].sum()
            hits[TOP5] = match.any(dim=1).sum()
        else:
            hits[TOP1] = (logits.argmax(dim=1) == targets).sum()
        hits[COUNT] = n
        self.sums += hits

    def copy(self) -> MetricSums:
        """An independent copy."""
        other = MetricSums.__new__(MetricSums)
        other.sums, other.topk = self.sums.clone(), self.topk
        return other

    def all_reduce(self) -> None:
        """Sum over the processes of a distributed run (a no-op in a single process)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.sums)

    def result(self) -> dict[str, float]:
        """``{"loss", "accuracy"[, "top5"]}`` (NaN before any sample)."""
        loss, top1, top5, count = self.sums.tolist()
        nan = float("nan")
        out = {"loss": loss / count if count else nan, "accuracy": top1 / count if count else nan}
        if self.topk:
            out["top5"] = top5 / count if count else nan
        return out

    def state(self) -> list[float]:
        """The sums as plain numbers (for a mid-epoch checkpoint)."""
        return self.sums.tolist()

    def load(self, values: list[float]) -> None:
        """Restore :meth:`state`."""
        self.sums.copy_(torch.tensor(values, dtype=self.sums.dtype))
