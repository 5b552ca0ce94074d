"""selip embed / selip search: an archive embedded and searched from the command line.

The commands run in-process through ``selip.cli.main`` with the arguments a user types;
tests/test_quiet.py starts the same commands through the installed console script."""

from __future__ import annotations

import numpy as np
import pytest

import selip
from selip.inference.archive import load_embeddings


@pytest.mark.slow
def test_embed_reads_the_cache_and_matches_the_files_then_search_finds(pretrained, tmp_path,
                                                                       selip_cli):
    manifest, checkpoint = pretrained
    cache = checkpoint.parents[4] / "cache"  # the pretraining run's cache (same settings)
    assert cache.is_dir()
    out = tmp_path / "archive.npz"
    done = selip_cli("embed", "--ckpt", str(checkpoint), "--manifest", str(manifest), "--split",
                     "all", "--out", str(out), "--cache_dir", str(cache), "--num_workers", "0")
    assert done.returncode == 0, done.stderr
    archive = load_embeddings(out)
    assert len(archive) == 20  # 10 exams × (t1, flair)
    assert set(archive.sequence) == {"t1", "flair"}
    as_parquet = tmp_path / "archive.parquet"
    done = selip_cli("embed", "--ckpt", str(checkpoint), "--manifest", str(manifest), "--split",
                     "test", "--out", str(as_parquet), "--cache_dir", str(cache),
                     "--num_workers", "0")
    assert done.returncode == 0, done.stderr
    test_rows = load_embeddings(as_parquet)
    for row, exam in enumerate(test_rows.exam_id):  # the same pairs, the same vectors
        match = np.flatnonzero((archive.exam_id == exam)
                               & (archive.sequence == test_rows.sequence[row]))
        assert len(match) == 1
        np.testing.assert_allclose(test_rows.image[row], archive.image[match[0]], atol=1e-6)
        assert test_rows.report[row] == archive.report[match[0]]
    model = selip.load(checkpoint, device="cpu")
    # from the cache and from the .nii.gz files: the same embeddings
    rows = [i for i, s in enumerate(archive.sequence) if s == "flair"][:3]
    files = [manifest.parent / "exams" / e / "flair.nii.gz" for e in archive.exam_id[rows]]
    assert np.abs(model.encode_images(files).numpy() - archive.image[rows]).max() <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(archive.text, axis=1), 1.0, atol=1e-5)
    found = selip_cli("search", "--ckpt", str(checkpoint), "--embeddings", str(out), "--text",
                      str(archive.report[0]), "--top", "3")
    assert found.returncode == 0, found.stderr
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].lstrip().startswith("1.")
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    by_image = selip_cli("search", "--ckpt", str(checkpoint), "--embeddings", str(out),
                         "--image", str(files[0]), "--top", "2")
    assert by_image.returncode == 0, by_image.stderr
    assert "report" in by_image.stdout and len(by_image.stdout.strip().splitlines()) == 2
    missing = selip_cli("search", "--ckpt", str(checkpoint), "--embeddings",
                        str(tmp_path / "none.npz"), "--text", "x")
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
