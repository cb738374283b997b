"""The phase loop both trainers run (style: ``train.style``; Dynamic DCGAN: ``train.gan``).

A trainer says what one step of a phase is (``Phase.step``: the next batch through the net and
the optimizer, returning its unweighted terms as device tensors) and how to save and preview; the
loop owns what is the same for both: the progress bar, the step counters, metrics lines every
``log_every`` steps (the only device sync: ``Meter.averages``), previews every ``preview_every``,
resumable checkpoints every ``checkpoint_every`` and on a stop request, and the agreement of all
processes on the step they stop at under DDP.
"""

import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import torch

from dynastream.train.session import (
    CHECK_STOP_EVERY,
    Distributed,
    Interrupted,
    Meter,
    RunDir,
    StopRequest,
    check_losses,
)


class Counters(Protocol):
    """The part of a trainer's progress record the loop advances (both trainers' ``_Progress``)."""

    phase_step: int
    step: int
    final_losses: dict


class Schedule(Protocol):
    log_every: int
    preview_every: int
    checkpoint_every: int


@dataclass
class Phase:
    name: str                                        # "main", "higher", "lower": metrics and losses
    label: str                                       # the progress bar's
    alpha: float
    steps: int
    step: Callable[[], dict[str, torch.Tensor]]      # one optimisation step on the next batch
    lr: Callable[[], float]                          # for the metrics line
    save: Callable[[], None]                         # the resumable checkpoint (all processes call it)
    preview: Callable[[str], None]                   # a preview image of this name (main process only)
    log_extra: Callable[[], dict] = field(default=lambda: {})   # more fields of the metrics line


def run_phase(phase: Phase, state: Counters, schedule: Schedule, d: Distributed, run: RunDir, stop: StopRequest,
              stop_at_step: Optional[int]) -> None:
    """Steps ``phase`` from ``state.phase_step`` to ``phase.steps``; raises ``Interrupted`` (after a
    checkpoint) on a stop request or at global step ``stop_at_step``."""
    from tqdm import tqdm

    bar = tqdm(total=phase.steps, initial=state.phase_step, desc=f"{phase.label} (α={phase.alpha:+g})", unit="step",
               disable=not d.is_main, dynamic_ncols=True, file=sys.stderr, mininterval=1.0)
    meter = Meter()
    try:
        while state.phase_step < phase.steps:
            meter.add(phase.step())
            state.phase_step += 1
            state.step += 1
            bar.update(1)
            last = state.phase_step == phase.steps
            if state.step % schedule.log_every == 0 or last:
                averages, sec = meter.averages(d)
                check_losses(averages, phase.name, state.step)
                state.final_losses[phase.name] = averages
                bar.set_postfix({k: f"{v:.4g}" for k, v in averages.items()}, refresh=False)
                run.log({"step": state.step, "phase": phase.name, "phase_step": state.phase_step,
                         "alpha": phase.alpha, **phase.log_extra(), **averages, "lr": phase.lr(),
                         "sec_per_step": sec, "time": time.time()})
            if d.is_main and schedule.preview_every and state.step % schedule.preview_every == 0:
                phase.preview(f"step_{state.step:07d}")
            stopping = stop.requested or state.step == stop_at_step
            if d.world > 1:   # processes must agree on the step they stop at: ask all every few steps
                checking = state.step % CHECK_STOP_EVERY == 0 or last or state.step == stop_at_step
                stopping = d.any(stopping) if checking else False
            if stopping or (schedule.checkpoint_every and state.step % schedule.checkpoint_every == 0 and not last):
                meter.check_finite(d, phase.name, state.step)
                phase.save()
            if stopping:
                raise Interrupted(run.last, state.step)
    finally:
        bar.close()
