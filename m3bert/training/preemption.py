"""A scheduler's warning signal (SLURM ``--signal=USR2@90``, submitit's timeout and preemption signal) turned into
a checkpoint at the next step boundary, then handed back to the scheduler so that the job is requeued.

submitit installs its own SIGUSR2 handler (checkpoint the callable, requeue, exit). Run inside a training step it
would end the process mid-step, after the last periodic checkpoint; :class:`Preemption` takes the signal over,
lets the trainer save the exact state, and only then calls the handler it replaced (:meth:`Preempted.hand_over`).
The requeued job runs the same command in the same run folder and resumes from that checkpoint.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

SIGNAL = signal.SIGUSR2  # what SLURM's --signal and submitit (USR_SIG) send before a time limit or preemption
EXIT_PREEMPTED = 3  # exit status when nothing takes the job over (rerun the same command to resume)


class Preempted(BaseException):
    """Raised by the trainer once the state at ``step`` is saved. A BaseException, like the SystemExit submitit
    would raise: nothing between the trainer and the entry point should treat it as a failure to handle."""

    def __init__(self, step: int, previous):
        super().__init__(f"preempted by SIG{SIGNAL.name.removeprefix('SIG')} at step {step}; checkpoint saved")
        self.step, self.previous = step, previous

    def hand_over(self) -> None:
        """Run the scheduler's handler (submitit requeues the job and exits); without one, exit with
        :data:`EXIT_PREEMPTED`."""
        if callable(self.previous):
            self.previous(SIGNAL, None)
        log.warning("%s; rerun the same command to resume", self)
        raise SystemExit(EXIT_PREEMPTED)


class Preemption:
    """``with Preemption() as p:`` ... ``if p.requested: save; raise p.stop(step)``. Outside the main thread
    (where signals cannot be caught) it never fires."""

    def __init__(self):
        self.requested, self.previous = False, None
        self._installed = False

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(SIGNAL, self._note)
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            signal.signal(SIGNAL, self.previous)
            self._installed = False

    def _note(self, signum, frame) -> None:
        if not self.requested:
            log.warning("Got %s: saving a checkpoint at the next step, then stopping", signal.Signals(signum).name)
        self.requested = True

    def stop(self, step: int) -> Preempted:
        previous = self.previous if self.previous not in (signal.SIG_DFL, signal.SIG_IGN, None) else None
        return Preempted(step, previous)
