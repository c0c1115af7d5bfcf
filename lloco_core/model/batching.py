"""How compress groups documents into forward passes (torch- and pydantic-free, so a bare GPU
image can import it with the encoder alone)."""

from __future__ import annotations

from typing import Protocol

CPU_BATCH_POSITIONS = 4096
GPU_BATCH_POSITIONS = 65536


class SummarySettings(Protocol):
    summary_length: int
    accumulate_summary: bool


def plan_batches(lengths: list[list[int]], settings: SummarySettings, batch_size: int, batch_positions: int) -> list[list[int]]:
    """Group documents (indices, shortest first) so each forward pass holds at most `batch_size`
    documents and about `batch_positions` input positions: similar lengths waste little padding,
    and the position cap keeps CPU batches inside its caches (measured: 8 long documents per pass
    ran at 0.7x the speed of one)."""
    def widest_input(segments: list[int]) -> int:
        softprompt = (len(segments) - 1) * settings.summary_length if settings.accumulate_summary else settings.summary_length
        return softprompt + max(segments) + settings.summary_length

    order = sorted(range(len(lengths)), key=lambda d: (sum(lengths[d]), d))
    batches: list[list[int]] = []
    for d in order:
        batch = batches[-1] if batches else None
        if batch and len(batch) < batch_size and (len(batch) + 1) * widest_input(lengths[d]) <= batch_positions:
            batch.append(d)
        else:
            batches.append([d])
    return batches
