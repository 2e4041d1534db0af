"""SIGTERM in the training loop: save a checkpoint where the run is, then exit 75, within a deadline.

    with StopRequest() as stop:
        ...  # each step: all ranks learn whether any was asked to stop (stop.requested rides on the step's
             # all-reduce), and then all save a checkpoint and raise Stopped

Everywhere else dorl exits 75 at once on SIGTERM (dorl.cli). A preempted training pod would then resume from its
last periodic checkpoint (`tf.checkpoint_every`, 500 steps by default) and redo up to that many steps. Inside the
loop a SIGTERM only marks the request; the ranks agree at the next step's start, save, and exit 75, and the next
attempt resumes from the step they reached. The kubelet kills a pod `terminationGracePeriodSeconds` after its
SIGTERM (30 s unless set) and torchrun's agent kills its workers 30 s after forwarding it, so a deadline bounds the
wait: BUDGET_S after the signal a timer raises Stopped wherever the process is (a long validation, a slow upload of
the checkpoint). A checkpoint cut short is never resumed from (dorl/engine/checkpoint.py writes atomically): the
previous one stays in force, as it would have without this.
"""

from __future__ import annotations

import logging
import signal
import threading

from dorl.errors import Stopped

log = logging.getLogger("dorl.train")

BUDGET_S = 20.0  # inside the 30 s both the kubelet's default grace period and torchrun's agent allow


class StopRequest:
    """SIGTERM handling for the span of a training loop; restores the previous handlers on exit."""

    def __init__(self):
        self.budget_s = BUDGET_S
        self.requested = False
        self._active = False
        self._previous: dict = {}

    def __enter__(self) -> StopRequest:
        # Python runs signal handlers in the main thread only; elsewhere (a test's thread) SIGTERM keeps dorl.cli's
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._previous = {
                signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_term),
                signal.SIGALRM: signal.signal(signal.SIGALRM, self._on_deadline),
            }
        return self

    def __exit__(self, *exc) -> None:
        if self._active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def _on_term(self, signum, frame) -> None:
        if self.requested:
            return
        self.requested = True
        signal.setitimer(signal.ITIMER_REAL, self.budget_s)
        log.warning("SIGTERM: saving a checkpoint after this step, then exiting 75 (within %g s)", self.budget_s)

    def _on_deadline(self, signum, frame) -> None:
        raise Stopped(
            f"stopped by signal {int(signal.SIGTERM)}: no checkpoint could be saved within {self.budget_s:g} s "
            "(the previous one stays in force)"
        )
