"""Memory and scale of the similarity table, dense vs sparse top-k, and the sparse error.

1. For U = 1k, 20k, 100k unique synthetic report texts: build seconds, peak resident
   memory of the build, bytes on disk, bytes a training step holds when the table is placed
   on the device, and the lookup time of a B = 256 batch — dense (U ≤ 20k: 100k would be a
   20 GB file) and sparse top-k. Each build runs in its own process so peaks do not mix.
   Lookups are timed with one torch thread (stable on a shared machine).
2. On the demo cohort: the error the sparse table introduces on the soft targets Q of
   training batches (demo batch size, the demo's `english` preset and linear norm), for
   several k: mean total-variation distance ½ Σ|Q − Q'| and KL(Q ‖ Q') per row.

    .venv/bin/python benchmarks/similarity_scale.py [--sizes 1000 20000 100000] [--top_k 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from similarity import synthetic_reports
from timing import median_seconds

from selip.similarity import PRESETS
from selip.similarity.sparse import build_sparse_table
from selip.similarity.table import build_table

DENSE_LIMIT = 20_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(size: int, kind: str, top_k: int, root: str) -> dict[str, Any]:
    """Build one table in this process; its peak RSS, build time, bytes and lookup ms."""
    texts = synthetic_reports(size)
    before = _rss_mb()
    started = time.perf_counter()
    if kind == "dense":
        table: Any = build_table(root, texts, PRESETS["english"], progress=False)
        disk = table.path.stat().st_size
        placed = table.matrix.nbytes
    else:
        table = build_sparse_table(root, texts, PRESETS["english"], top_k, progress=False)
        disk = table.nbytes
        placed = table.nbytes
    seconds = time.perf_counter() - started
    peak = _rss_mb() - before
    # One thread: torch's CPU thread pool stalls whenever another process holds a core,
    # which made these milliseconds swing 30x between identical runs on a busy machine.
    torch.set_num_threads(1)
    ids = torch.randint(0, size, (256,))
    table.lookup(ids)  # warm the page cache
    mapped = median_seconds(lambda: table.lookup(ids), repeats=20)
    table.place("cpu", budget_bytes=1 << 40)
    table.lookup(ids)
    in_memory = median_seconds(lambda: table.lookup(ids), repeats=20)
    return {"size": size, "kind": kind, "seconds": seconds, "peak_mb": peak,
            "disk_mb": disk / 2**20, "placed_mb": placed / 2**20,
            "lookup_mapped_ms": mapped * 1e3, "lookup_placed_ms": in_memory * 1e3}


def scale_table(sizes: list[int], top_k: int) -> list[dict[str, Any]]:
    rows = []
    for size in sizes:
        kinds = ["dense", "sparse"] if size <= DENSE_LIMIT else ["sparse"]
        for kind in kinds:
            with tempfile.TemporaryDirectory() as root:
                done = subprocess.run([sys.executable, __file__, "--child", str(size), kind,
                                       str(top_k), root], capture_output=True, text=True,
                                      check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = rows[-1]
            print(f"  U={size:>7,} {kind:6s} build {row['seconds']:7.1f} s, "
                  f"peak +{row['peak_mb']:7.0f} MB", flush=True)
    return rows


def training_id_batches(datamodule: Any, batches: int, batch_size: int) -> list[torch.Tensor]:
    """``batches`` random training batches of report ids (seeded: the same every run)."""
    train_ids = torch.tensor([p.report_id for p in datamodule.datasets["train"].pairs])
    generator = torch.Generator().manual_seed(0)
    return [train_ids[torch.randperm(len(train_ids), generator=generator)[:batch_size]]
            for _ in range(batches)]


def sparse_error(manifest: Path, cache: Path, ks: list[int], batches: int,
                 batch_size: int) -> tuple[int, list[dict[str, float]]]:
    """Soft-target error of top-k tables vs the dense table on the demo's training batches."""
    from selip.data.datamodule import SelipDataModule
    from selip.losses import soft_targets
    from selip.similarity.sparse import load_or_build_sparse

    datamodule = SelipDataModule(str(manifest), cache_dir=str(cache), similarity="english",
                                 num_workers=0, progress=False, check_files=False)
    datamodule.setup("fit")
    dense = datamodule.similarity_table
    config = datamodule.similarity
    assert dense is not None and config is not None
    samples = training_id_batches(datamodule, batches, batch_size)
    results = []
    for k in ks:
        sparse, _ = load_or_build_sparse(cache, datamodule.report_table.texts, config, k,
                                         progress=False)
        tv, kl, changed = [], [], []
        for ids in samples:
            exact, approx = dense.lookup(ids), sparse.lookup(ids)
            q, q_approx = soft_targets(exact), soft_targets(approx)
            tv.append(0.5 * (q - q_approx).abs().sum(1).mean().item())
            rows = q.sum(1) > 0
            ratio = (q[rows].clamp(min=1e-3) / q_approx[rows].clamp(min=1e-3)).log()
            kl.append((q[rows] * ratio).sum(1).mean().item() if rows.any() else 0.0)
            changed.append((exact != approx).float().mean().item())
        results.append({"k": k, "tv": float(np.mean(tv)), "kl": float(np.mean(kl)),
                        "changed": float(np.mean(changed))})
    return len(datamodule.report_table.texts), results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000, 100000])
    parser.add_argument("--top_k", type=int, default=256)
    parser.add_argument("--error_ks", type=int, nargs="+", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--manifest", type=Path, default=Path("demo_data/manifest.csv"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        size, kind, top_k, root = args.child
        print(json.dumps(child(int(size), kind, int(top_k), root)))
        return

    print(f"similarity table scale (english preset, top_k {args.top_k}, 2 threads)")
    rows = scale_table(args.sizes, args.top_k)
    print("\n| U | table | build | peak RSS of the build | on disk | held when placed | "
          "lookup B=256, memory map | placed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        name = "dense U×U" if row["kind"] == "dense" else f"sparse top-{args.top_k}"
        print(f"| {row['size']:,} | {name} | {row['seconds']:.1f} s | {row['peak_mb']:.0f} MB "
              f"| {row['disk_mb']:.1f} MB | {row['placed_mb']:.1f} MB | "
              f"{row['lookup_mapped_ms']:.2f} ms | {row['lookup_placed_ms']:.2f} ms |")
    for size in args.sizes:
        if size > DENSE_LIMIT:
            gigabytes = size * size * 2 / 2**30
            print(f"| {size:,} | dense U×U | not built: {gigabytes:.0f} GB | | | | | |")

    with tempfile.TemporaryDirectory() as tmp:
        manifest = args.manifest
        if not manifest.exists():
            from selip.demo import generate_demo_cohort

            manifest = generate_demo_cohort(Path(tmp) / "demo", num_exams=200, seed=0,
                                            progress=False)
        unique, errors = sparse_error(manifest, Path(tmp) / "cache", args.error_ks,
                                      args.batches, args.batch_size)
    print(f"\nsoft-target error of top-k vs dense on the demo cohort (U = {unique} unique "
          f"texts, {args.batches} training batches of {args.batch_size}, linear norm)")
    print("\n| k | pairs of a batch whose S changed | mean ½Σ|Q − Q'| per row | "
          "mean KL(Q ‖ Q') per row |")
    print("| --- | --- | --- | --- |")
    for error in errors:
        print(f"| {error['k']} | {error['changed']:.1%} | {error['tv']:.4f} | "
              f"{error['kl']:.4f} |")


if __name__ == "__main__":
    main()
