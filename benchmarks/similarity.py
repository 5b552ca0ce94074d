"""Similarity benchmark: the table build and the per-batch lookup vs per-pair Python.

Side by side in one run, on synthetic English reports (1–3 findings each from a
vocabulary of locations and appearances) under the ``english`` preset:

* build: ``build_table`` (vectorised, block-wise, 2 threads, written to disk) for
  U = 1k, 5k, 20k unique texts vs a straightforward per-pair Python loop over the same
  rule (findings parsed once; the loop timed on a random subsample of pairs and scaled
  by the U² pair count);
* lookup: ``table.lookup(ids)`` for a batch of B = 64 and 256 ids vs computing that
  batch's B×B matrix pair by pair in Python.

    .venv/bin/python benchmarks/similarity.py [--sizes 1000 5000 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from timing import median_seconds

from selip.similarity.config import resolve_config
from selip.similarity.findings import report_findings
from selip.similarity.reference import parsed_similarity
from selip.similarity.table import SimilarityTable, build_table

SIDES = ("left", "right")
REGIONS = ("frontal lobe", "parietal lobe", "temporal lobe", "occipital lobe", "basal ganglia",
           "thalamus", "periventricular white matter", "cerebellar hemisphere", "insula",
           "corpus callosum", "centrum semiovale", "corona radiata", "pons", "midbrain",
           "hippocampus", "caudate nucleus", "putamen", "internal capsule", "cingulate gyrus",
           "precentral gyrus")
APPEARANCES = ("hyperintense signal", "hypointense signal", "isointense signal",
               "restricted diffusion", "mixed signal", "hyperintense signal with oedema",
               "multiple hyperintense foci", "patchy hyperintense signal",
               "hypointense signal with mass effect", "ring enhancement",
               "small hyperintense focus", "confluent hyperintense signal")


def synthetic_reports(count: int, seed: int = 0) -> list[str]:
    """``count`` unique English pair texts (one is the normal text)."""
    rng = np.random.default_rng(seed)
    texts = {"No abnormality detected."}
    while len(texts) < count:
        findings = [f"{rng.choice(SIDES)} {rng.choice(REGIONS)}: {rng.choice(APPEARANCES)}"
                    for _ in range(int(rng.integers(1, 4)))]
        texts.add("; ".join(findings))
    return sorted(texts)


def bench_build(sizes: list[int], naive_pairs: int, root: str) -> dict[int, SimilarityTable]:
    config = resolve_config("english")
    tables = {}
    print("build (english preset)      vectorised table   per-pair Python (scaled)    ratio")
    for size in sizes:
        texts = synthetic_reports(size)
        start = time.perf_counter()
        tables[size] = build_table(f"{root}/{size}", texts, config, threads=2, progress=False)
        built = time.perf_counter() - start
        parsed = [report_findings(t, config) for t in texts]
        rng = np.random.default_rng(1)
        pairs = rng.integers(0, size, (naive_pairs, 2))
        start = time.perf_counter()
        for i, j in pairs:
            parsed_similarity(parsed[i], parsed[j], config)
        naive = (time.perf_counter() - start) / naive_pairs * size * size
        print(f"U = {size:6d}                {built:9.2f} s   {naive:12.0f} s          "
              f"{naive / built:7.0f}x")
    return tables


def bench_lookup(table: SimilarityTable, texts: list[str], batch_sizes: list[int]) -> None:
    config = resolve_config("english")
    table.place("cpu", budget_bytes=4 << 30)
    parsed = [report_findings(t, config) for t in texts]
    rng = np.random.default_rng(2)
    print(f"lookup (U = {len(table)}, table in memory)   lookup        per-batch Python     ratio")
    for batch in batch_sizes:
        ids = torch.from_numpy(rng.integers(0, len(table), batch))
        def lookup(ids: torch.Tensor = ids) -> torch.Tensor:
            return table.lookup(ids)

        fast = median_seconds(lookup, 200)
        index = ids.tolist()

        def python_batch(index: list[int] = index) -> None:
            [[parsed_similarity(parsed[i], parsed[j], config) for j in index] for i in index]

        slow = median_seconds(python_batch, 3)
        print(f"B = {batch:4d}                       {fast * 1e3:7.3f} ms   {slow * 1e3:12.1f} ms"
              f"       {slow / fast:7.0f}x")
    table._placed = None
    ids = torch.from_numpy(rng.integers(0, len(table), 256))
    mapped = median_seconds(lambda: table.lookup(ids), 50)
    print(f"B =  256, from the memory map        {mapped * 1e3:7.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--naive-pairs", type=int, default=20000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="selip-bench-") as root:
        tables = bench_build(args.sizes, args.naive_pairs, root)
        largest = max(args.sizes)
        bench_lookup(tables[largest], synthetic_reports(largest), [64, 256])


if __name__ == "__main__":
    main()
