"""SLURM jobs on a real one-node cluster (slurmctld + slurmd + munged on localhost):

- the demo pretraining as a two-task CPU (gloo) DDP job from scripts/slurm/demo-cpu.sbatch,
  preempted with SIGUSR1, requeued by selip, resumed from its checkpoint, finished with the
  expected number of steps and each step logged once; a failing rank ends the job; neither
  relies on Lightning's job-id-derived rendezvous port (the tests hold those ports);
- scripts/slurm/prepare-array.sbatch: a 4-task import array, then a 4-task prepare array
  after it, write the same manifest, volumes and cache as one process.

Skipped, with the reason shown, where the machine cannot run the cluster (see
tests/slurm_cluster.py); .ci/run installs slurm-wlm and munge so that CI runs it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import torch

from tests.slurm_cluster import ClusterUnavailable, LocalSlurm
from tests.tasks.conftest import TINY_IMAGE, TINY_TEXT
from tests.tasks.recorder import recorded
from tests.tasks.test_resume import _logged_steps

ROOT = Path(__file__).parents[1]
EPOCHS, BATCH, TASKS = 6, 4, 2

# One local cluster per test process: under pytest-xdist each worker that runs one of these
# tests starts its own (job ids 1, 2, … in each). The sbatch scripts pick a free rendezvous
# port, so two clusters' jobs with the same id do not collide.
# longest: the three jobs share one cluster and run one after another in one worker
pytestmark = [pytest.mark.slow, pytest.mark.longest]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    try:
        running = LocalSlurm(tmp_path_factory.mktemp("slurm")).start()
    except ClusterUnavailable as reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    with _ports_taken(15000 + job_id for job_id in range(1, 51)):
        yield running
    running.stop()


@contextlib.contextmanager
def _ports_taken(ports: Iterable[int]) -> Iterator[None]:
    """Listen on ``ports`` (those free now) for the block. Lightning's default rendezvous
    port for SLURM job n is 15000 + n, so holding them is what another job whose id ends
    alike does on a shared node: the sbatch scripts must pick their own port."""
    sockets = []
    for port in ports:
        sock = socket.socket()
        try:
            sock.bind(("", port))
            sock.listen()
            sockets.append(sock)
        except OSError:
            sock.close()
    try:
        yield
    finally:
        for sock in sockets:
            sock.close()


def _job_args(manifest: Path, root: Path, record: Path) -> list[str]:
    recorder = {"class_path": "tests.tasks.recorder.SampleRecorder",
                "init_args": {"path": str(record)}}
    options = {
        "--trainer.default_root_dir": root, "--trainer.logger.init_args.save_dir": root / "runs",
        "--trainer.precision": "32", "--trainer.max_epochs": EPOCHS,
        "--trainer.log_every_n_steps": 1, "--trainer.enable_progress_bar": "false",
        "--model.init_args.image_encoder": json.dumps(TINY_IMAGE),
        "--model.init_args.text_encoder": json.dumps(TINY_TEXT),
        "--model.init_args.embed_dim": 16, "--model.init_args.figures_every_n_val_epochs": 0,
        "--data.manifest": manifest, "--data.cache_dir": root / "cache",
        "--data.shape": "[16, 16, 16]", "--data.spacing": "[2, 2, 2]",
        "--data.sequences": "[t1, flair]", "--data.batch_size": BATCH,
        "--data.eval_batch_size": BATCH, "--data.max_length": 32, "--data.progress": "false",
        "--data.val_fraction": 0.2, "--data.test_fraction": 0.0,
        "--data.similarity": "paper",
    }
    args = [str(item) for pair in options.items() for item in pair]
    return [*args, f"--trainer.callbacks+={json.dumps(recorder)}"]


def _steps_per_epoch(manifest: Path, root: Path) -> int:
    from selip.data.datamodule import SelipDataModule

    datamodule = SelipDataModule(str(manifest), cache_dir=str(root / "cache"),
                                 sequences=["t1", "flair"], shape=(16, 16, 16),
                                 spacing=(2.0, 2.0, 2.0), val_fraction=0.2, test_fraction=0.0,
                                 batch_size=BATCH, num_workers=0, max_length=32,
                                 similarity=None, progress=False, check_files=False)
    datamodule.setup("fit")
    return math.ceil(len(datamodule.datasets["train"]) / TASKS) // BATCH


def _wait(condition, timeout: float, what: str, output: Path,  # type: ignore[no-untyped-def]
          failed=lambda: False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not failed():
        if condition():
            return
        time.sleep(0.2)
    log = output.read_text()[-3000:] if output.exists() else "(no job output)"
    raise AssertionError(f"gave up waiting for {what}; job output:\n{log}")


def test_a_preempted_ddp_job_requeues_resumes_and_finishes(cluster, tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=16)
    record, output = tmp_path / "batches.jsonl", tmp_path / "job.out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "SELIP_CONFIG": str(ROOT / "configs" / "demo.yaml"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    job = cluster.submit(ROOT / "scripts" / "slurm" / "demo-cpu.sbatch",
                         _job_args(manifest, tmp_path, record), env, cwd=tmp_path,
                         output=output)

    def steps(rank: int) -> list[int]:
        return [b["step"] for b in recorded(record) if b["rank"] == rank] if record.exists() else []

    def rank0_steps() -> list[int]:
        return steps(0)

    def ended() -> bool:
        return cluster.job(job)["JobState"] in ("COMPLETED", "FAILED", "CANCELLED")

    _wait(lambda: len(rank0_steps()) >= 4, 180, "4 training steps", output, failed=ended)
    cluster.scancel("--signal=USR1", job)  # what --signal=SIGUSR1@90 sends before the limit

    def restarted() -> bool:
        fields = cluster.job(job)
        if fields["JobState"] == "PENDING" and fields.get("Reason") == "BeginTime":
            # slurmctld holds a requeued job for 120 s before it is eligible again; start
            # it now rather than make the test wait.
            cluster.scontrol("update", f"JobId={job}", "StartTime=now")
        return fields["Restarts"] == "1" and fields["JobState"] in ("RUNNING", "COMPLETED")

    _wait(restarted, 120, "the requeued job to start", output)
    _wait(ended, 240, "the job to finish", output)
    fields, log = cluster.job(job), output.read_text()
    assert fields["JobState"] == "COMPLETED" and fields["Restarts"] == "1", log[-3000:]
    assert f"requeueing SLURM job {job}" in log
    run = tmp_path / "runs" / "demo" / f"slurm-{job}"
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in log

    total = EPOCHS * _steps_per_epoch(manifest, tmp_path)
    final = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == total
    assert rank0_steps() == list(range(1, total + 1))  # no step trained twice or skipped
    assert steps(1) == rank0_steps()  # every rank trained the same steps
    logged = _logged_steps(run)
    assert sorted(logged) == list(range(total)), str(logged)  # each step logged once


def test_a_rank_that_fails_ends_the_job_naming_the_rank(cluster, tiny_cohort, tmp_path):
    manifest = tiny_cohort(n=16)
    record, output = tmp_path / "batches.jsonl", tmp_path / "job.out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "SELIP_CONFIG": str(ROOT / "configs" / "demo.yaml"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    fault = {"class_path": "tests.rank_faults.RaiseOnRank", "init_args": {"rank": 1, "step": 2}}
    args = [*_job_args(manifest, tmp_path, record), f"--trainer.callbacks+={json.dumps(fault)}"]
    job = cluster.submit(ROOT / "scripts" / "slurm" / "demo-cpu.sbatch", args, env,
                         cwd=tmp_path, output=output)

    def ended() -> bool:
        return cluster.job(job)["JobState"] in ("COMPLETED", "FAILED", "CANCELLED")

    _wait(ended, 180, "the job to end", output)
    log = output.read_text()
    assert cluster.job(job)["JobState"] == "FAILED", log[-3000:]
    assert "selip: rank 1: failed with RuntimeError: injected failure on rank 1" in log, log[-3000:]


def _array_states(cluster: LocalSlurm, job: str) -> list[str]:
    """The state of each task of the array ``job`` (``scontrol`` prints one line per task,
    or one line for the tasks still pending together)."""
    done = subprocess.run(["scontrol", "-o", "show", "job", job], env=cluster.env,
                          capture_output=True, text=True, check=True)
    return [field.partition("=")[2] for line in done.stdout.splitlines()
            for field in line.split() if field.startswith("JobState=")]


def _array_ended(cluster: LocalSlurm, job: str) -> bool:
    states = _array_states(cluster, job)
    return bool(states) and all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in states)


def test_a_four_task_array_imports_and_prepares_like_one_process(cluster, tmp_path):
    from selip.cli import main
    from tests.importer.test_dicom_import import write_archive, write_reports

    source, reports = tmp_path / "export", write_reports(tmp_path / "reports.csv")
    write_archive(source)
    data = ["--data.shape", "[16, 16, 16]", "--data.spacing", "[3, 3, 3]",
            "--data.progress", "false"]
    single, array = tmp_path / "single", tmp_path / "array"
    assert main(["import", "dicom", str(source), "--reports", str(reports), "--out",
                 str(single / "cohort"), "--quiet"]) == 0
    assert main(["prepare", "--data.manifest", str(single / "cohort" / "manifest.csv"),
                 "--data.cache_dir", str(single / "cache"), *data, "--workers", "1"]) == 0
    (array / "cohort").mkdir(parents=True)
    shutil.copy(single / "cohort" / "import_key", array / "cohort")  # the same exam ids

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = ROOT / "scripts" / "slurm" / "prepare-array.sbatch"
    tasks = ["--array=0-3", "--cpus-per-task=1"]
    imported = cluster.submit(script, ["import", "dicom", str(source), "--reports",
                                       str(reports), "--out", str(array / "cohort")],
                              env, cwd=tmp_path, output=tmp_path / "import-%a.out",
                              sbatch_options=tasks)
    prepared = cluster.submit(script, ["prepare", "--data.manifest",
                                       str(array / "cohort" / "manifest.csv"),
                                       "--data.cache_dir", str(array / "cache"), *data],
                              env, cwd=tmp_path, output=tmp_path / "prepare-%a.out",
                              sbatch_options=[*tasks, f"--dependency=afterok:{imported}"])
    _wait(lambda: _array_ended(cluster, prepared), 420, "the prepare array to end",
          tmp_path / "prepare-0.out")
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("*-?.out")))
    assert _array_states(cluster, imported) == ["COMPLETED"] * 4, logs[-3000:]
    assert _array_states(cluster, prepared) == ["COMPLETED"] * 4, logs[-3000:]
    assert "exams written: 3" in logs  # the last import task merged the manifest
    assert (array / "cohort" / "manifest.csv").read_text() == \
        (single / "cohort" / "manifest.csv").read_text()
    volumes = {str(p.relative_to(single / "cohort")): p.read_bytes()
               for p in sorted((single / "cohort" / "nifti").rglob("*")) if p.is_file()}
    assert volumes == {str(p.relative_to(array / "cohort")): p.read_bytes()
                       for p in sorted((array / "cohort" / "nifti").rglob("*")) if p.is_file()}

    def cache(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes()
                for p in sorted((root / "volumes").rglob("*")) if p.is_file()}

    assert cache(single / "cache") and cache(array / "cache") == cache(single / "cache")
