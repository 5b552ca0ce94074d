"""What every data-loader worker process does first.

A scheduler stops a job by signalling every process in it — ``scancel``, preemption,
``timeout``, a terminal's ``kill -- -PGID`` — so the loader's workers receive the same
SIGTERM (or SIGUSR1) as the trainer. By default that kills them, and the trainer then dies
on "DataLoader worker exited unexpectedly" before it reaches the step boundary where
:class:`selip.training.last_checkpoint.LastCheckpoint` saves ``last.ckpt`` and stops
cleanly. Workers therefore ignore the stop signals: the main process alone decides when
the run ends, then shuts its workers down as usual (and PyTorch's watchdog ends them if
the main process is killed outright).
"""

from __future__ import annotations

import signal

#: Signals that ask a run to save and stop; workers leave them to the main process.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def ignore_stop_signals(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: this worker ignores :data:`STOP_SIGNALS`."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
