"""A one-node SLURM cluster on localhost for the tests: munged, slurmctld and slurmd from
Debian's slurm-wlm and munge packages, with every file under one temporary folder.

``LocalSlurm.start`` raises :class:`ClusterUnavailable` with the reason when the machine
cannot run it (packages missing, not root, a daemon that does not come up); the tests
turn that into a visible skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo")


class ClusterUnavailable(RuntimeError):
    """This machine cannot run the local cluster; the message says why."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalSlurm:
    """A running one-node cluster; ``env`` is what client commands need (``SLURM_CONF``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.node = socket.gethostname().split(".")[0]

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> LocalSlurm:
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            raise ClusterUnavailable(f"{', '.join(missing)} not installed (apt-get install "
                                     "slurm-wlm munge; .ci/run does)")
        if os.geteuid() != 0:
            raise ClusterUnavailable("slurmd must run as root to start jobs")
        for folder in ("state", "spool", "log"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._run(["munged", f"--key-file={key}", f"--socket={self.root / 'munge.sock'}",
                   f"--pid-file={self.root / 'munged.pid'}",
                   f"--log-file={self.root / 'log' / 'munged.log'}",
                   f"--seed-file={self.root / 'munge.seed'}", "--force"], "munged")
        self.conf.write_text(self._config())
        self._run(["slurmctld", "-f", str(self.conf), "-i"], "slurmctld")
        self._run(["slurmd", "-f", str(self.conf)], "slurmd")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env,
                                   capture_output=True, text=True)
            if state.returncode == 0 and state.stdout.strip() == "idle":
                return self
            time.sleep(0.5)
        logs = "\n".join(self._tail(self.root / "log" / name)
                         for name in ("slurmctld.log", "slurmd.log"))
        self.stop()
        raise ClusterUnavailable(f"the node did not become idle in {timeout:.0f} s:\n{logs}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], env=self.env,
                       capture_output=True)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            if not pid_file.exists():
                continue
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, ValueError, IndexError):
                pass

    # -- jobs ------------------------------------------------------------------------------
    def submit(self, script: Path, args: list[str], env: dict[str, str], cwd: Path,
               output: Path, sbatch_options: list[str] | None = None) -> str:
        """``sbatch`` the script; returns the job id."""
        done = subprocess.run(["sbatch", "--parsable", f"--output={output}",
                               *(sbatch_options or []), str(script), *args],
                              env={**env, "SLURM_CONF": str(self.conf)}, cwd=cwd,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed: {done.stderr}")
        return done.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (JobState, Reason, Restarts, ExitCode, …)."""
        done = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env,
                              capture_output=True, text=True, check=True)
        fields = {}
        for item in done.stdout.split():
            name, _, value = item.partition("=")
            fields[name] = value
        return fields

    def scontrol(self, *args: str) -> None:
        subprocess.run(["scontrol", *args], env=self.env, check=True, capture_output=True)

    def scancel(self, *args: str) -> None:
        subprocess.run(["scancel", *args], env=self.env, check=True, capture_output=True)

    # -- internals -------------------------------------------------------------------------
    def _run(self, command: list[str], name: str) -> None:
        done = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            self.stop()
            raise ClusterUnavailable(f"{name} did not start: {done.stderr.strip()}")

    @staticmethod
    def _tail(path: Path, lines: int = 15) -> str:
        if not path.exists():
            return f"({path.name}: no log)"
        return f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-lines:])

    def _config(self) -> str:
        root = self.root
        cpus = os.cpu_count() or 2
        return f"""\
ClusterName=selip-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root / 'munge.sock'}
CredType=cred/munge
StateSaveLocation={root / 'state'}
SlurmdSpoolDir={root / 'spool'}
SlurmctldPidFile={root / 'slurmctld.pid'}
SlurmdPidFile={root / 'slurmd.pid'}
SlurmctldLogFile={root / 'log' / 'slurmctld.log'}
SlurmdLogFile={root / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobRequeue=1
KillWait=10
MinJobAge=600
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
