"""The selip command: prepare on every config, clear errors without tracebacks."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selip.cli import main
from tests.conftest import write_manifest

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_there_are_configs():
    assert any(c.name == "demo.yaml" for c in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_prepare_runs_on_every_config(config, tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=6)
    data = yaml.safe_load(config.read_text()).get("data", {})
    overrides = ["--data.manifest", str(manifest), "--data.cache_dir", str(tmp_path / "cache"),
                 "--data.shape", "[8, 12, 10]", "--data.spacing", "[2, 2, 2]",
                 "--data.progress", "false", "--workers", "1"]
    if data.get("sequences"):  # the tiny cohort has t1 and flair only
        overrides += ["--data.sequences", "[t1, flair]"]
    assert main(["prepare", "--config", str(config), *overrides]) == 0
    out = capsys.readouterr().out
    assert "OK — 12 pairs" in out and "built" in out
    assert len(list((tmp_path / "cache" / "volumes").rglob("*.npy"))) == 18  # 12 volumes + 6 masks
    assert main(["prepare", "--config", str(config), *overrides]) == 0
    assert "18 already cached, 0 built" in capsys.readouterr().out


def test_prepare_reports_every_problem_and_exits_non_zero(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "m.csv", [
        {"exam_id": "a", "t1": "missing.nii.gz", "report": ""},
        {"exam_id": "a", "t1": "", "report": "x"},
    ])
    code = main(["prepare", "--data.manifest", str(manifest), "--data.cache_dir",
                 str(tmp_path / "c"), "--data.progress", "false"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("selip: 5 problems in the data:")
    assert "row 1 (exam a), column 'report': report is empty" in err
    assert "row 1 (exam a), column 't1': file not found" in err  # checked despite the above
    assert "no volume for any of the sequences t1" in err
    assert "Traceback" not in err


def test_check_only_reads_every_file_without_filling_the_cache(tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=4)
    assert main(["prepare", "--data.manifest", str(manifest), "--data.cache_dir",
                 str(tmp_path / "c"), "--check_only", "true", "--data.progress", "false"]) == 0
    assert "OK" in capsys.readouterr().out
    assert not (tmp_path / "c" / "volumes").exists()


def test_usage_unknown_command_and_missing_manifest(capsys):
    assert main([]) == 0 and "demo-data" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:  # jsonargparse's own usage error
        main(["prepare"])
    assert caught.value.code == 2 and "data.manifest" in capsys.readouterr().err


@pytest.mark.slow
def test_a_missing_manifest_is_one_line_not_a_traceback(tmp_path, selip_cli):
    # in-process; the console script on bad input: ..._lists_table_and_file_problems_in_one_run
    result = selip_cli("prepare", "--data.manifest", str(tmp_path / "absent.csv"))
    assert result.returncode == 2
    assert "manifest file not found" in result.stderr and "Traceback" not in result.stderr


def test_demo_data_then_prepare_with_the_demo_config(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo-data", "--out", str(out), "--num-exams", "3", "--seed", "1",
                 "--quiet"]) == 0
    assert (out / "manifest.csv").is_file()
    assert "demo cohort: 3 exams" in capsys.readouterr().out
    demo_config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    assert main(["prepare", "--config", str(demo_config), "--data.manifest",
                 str(out / "manifest.csv"), "--data.cache_dir", str(tmp_path / "cache"),
                 "--data.progress", "false", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "OK — 15 pairs" in printed and "sequences t1, t2, flair, dwi, adc" in printed


def test_demo_data_rejects_a_bad_count(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path), "--num-exams", "0", "--quiet"]) == 2
    assert "num_exams must be >= 1" in capsys.readouterr().err


def test_similarity_builds_then_reuses_the_table(tiny_cohort, tmp_path, capsys):
    manifest = tiny_cohort(n=6)
    args = ["similarity", "--data.manifest", str(manifest), "--data.cache_dir",
            str(tmp_path / "c"), "--data.progress", "false", "--data.similarity", "paper"]
    assert main([*args, "--show", "2"]) == 0
    first = capsys.readouterr().out
    key = first.split()[1]
    assert len(key) == 64 and "unique texts" in first
    assert (tmp_path / "c" / "similarity" / f"{key}.f16").is_file()
    assert len([line for line in first.splitlines() if "  ~  " in line]) == 2
    assert main(args) == 0
    assert capsys.readouterr().out.split()[1] == key  # same key, loaded not rebuilt
    assert main([*args[:-1], "english"]) == 0
    assert capsys.readouterr().out.split()[1] != key
    assert main([*args[:-2], "--data.similarity", "null"]) == 2
    assert "no similarity table" in capsys.readouterr().err
    assert main([*args, "--data.similarity.top_k", "3", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "top-3 neighbours per report" in out and len(out.strip().splitlines()) == 7
    assert main([*args[:-2], "--data.similarity.mode", "per_batch", "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "per_batch: no table" in out and out.split()[1].endswith("-parsed")
    assert len([line for line in out.splitlines() if "  ~  " in line]) == 2
    assert main([*args[:-2], "--data.similarity.mode", "per_batch",
                 "--data.similarity.top_k", "3"]) == 2
    assert "data.similarity.top_k is a table's setting" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_lists_table_and_file_problems_in_one_run(tmp_path):
    from tests.conftest import head_volume, write_nifti

    data = write_nifti(tmp_path / "good.nii.gz", head_volume()).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    manifest = write_manifest(tmp_path / "m.csv", [
        {"exam_id": "a", "t1": "good.nii.gz", "report": ""},
        {"exam_id": "b", "t1": "missing.nii.gz", "report": "No abnormality detected."},
        {"exam_id": "c", "t1": "cut.nii.gz", "report": "No abnormality detected."},
    ])
    script = Path(sys.executable).with_name("selip")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "selip.cli"]
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    result = subprocess.run([*command, "prepare", "--config", str(config), "--data.manifest",
                             str(manifest), "--data.cache_dir", str(tmp_path / "cache"),
                             "--data.sequences", "[t1, flair]", "--data.progress", "false",
                             "--check_only", "true"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("selip: 4 problems in the data:")
    assert "sequence 'flair' was requested but the manifest has no such column" in result.stderr
    assert "row 1 (exam a), column 'report': report is empty" in result.stderr
    assert "row 2 (exam b), column 't1': file not found" in result.stderr
    assert "row 3 (exam c), column 't1': corrupt or truncated" in result.stderr
    assert "Traceback" not in result.stderr


def test_prepare_imports_no_lightning(tiny_cohort, tmp_path):
    """Each task of a SLURM prepare array starts a process: importing Lightning (seconds)
    for a cache fill would be wasted, so prepare parses the data section without it."""
    manifest = tiny_cohort(n=3)
    config = Path(__file__).parents[1] / "configs" / "demo.yaml"
    probe = ("import sys; from selip.cli import main; code = main(['prepare', '--config', "
             "sys.argv[1], '--data.manifest', sys.argv[2], '--data.cache_dir', sys.argv[3], "
             "'--data.sequences', '[t1, flair]', '--data.shape', '[8, 8, 8]', "
             "'--data.progress', 'false', '--workers', '1']); "
             "print(code, sorted({k.split('.')[0] for k in sys.modules} & {'lightning', "
             "'pytorch_lightning', 'torchmetrics', 'monai'}))")
    result = subprocess.run([sys.executable, "-c", probe, str(config), str(manifest),
                             str(tmp_path / "cache")], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "entries 9, 0 already cached, 9 built" in result.stdout
    assert result.stdout.strip().endswith("0 []"), result.stdout


def _cache_files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): p.read_bytes()
            for p in sorted((cache / "volumes").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_prepare_shards_fill_the_same_cache_as_one_process(tiny_cohort, tmp_path, capsys,
                                                           monkeypatch):
    manifest = tiny_cohort(n=7)
    common = ["--data.manifest", str(manifest), "--data.shape", "[8, 12, 10]",
              "--data.spacing", "[2, 2, 2]", "--data.progress", "false", "--workers", "1"]
    assert main(["prepare", *common, "--data.cache_dir", str(tmp_path / "whole")]) == 0
    for index in range(3):
        assert main(["prepare", *common, "--data.cache_dir", str(tmp_path / "sharded"),
                     "--shard", f"{index}/3"]) == 0
    out = capsys.readouterr().out
    assert "shard 0/3 — 3 of 7 exams, 9 volumes and masks" in out
    assert "shard 2/3 — 2 of 7 exams" in out
    whole, sharded = _cache_files(tmp_path / "whole"), _cache_files(tmp_path / "sharded")
    assert whole and sharded == whole  # every volume and mask, byte for byte
    assert list((tmp_path / "sharded" / "similarity").iterdir())  # built by shard 0
    # SLURM's array variables choose the shard when --shard is not given
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert main(["prepare", *common, "--data.cache_dir", str(tmp_path / "sharded")]) == 0
    assert "shard 1/3 — 2 of 7 exams" in capsys.readouterr().out
    assert main(["prepare", *common, "--data.cache_dir", str(tmp_path / "x"),
                 "--shard", "3/3"]) == 2
    assert "--shard '3/3': expected 0 <= I < N" in capsys.readouterr().err
