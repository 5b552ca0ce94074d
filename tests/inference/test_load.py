"""selip.load / selip export: a trained model used without Lightning."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import selip
from selip.data.nifti import VolumeError
from selip.data.preprocess import preprocess_volume
from selip.inference import InferenceError, PretrainedSelip

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TEXTS = ["left frontal lobe: hyperintense signal", "No abnormality detected."]


def _volumes(manifest: Path) -> list[Path]:
    rows = manifest.read_text().splitlines()[1:]
    header = manifest.read_text().splitlines()[0].split(",")
    column = header.index("flair")
    return [manifest.parent / row.split(",")[column] for row in rows[:3]]


@pytest.mark.slow
def test_checkpoint_and_export_embed_alike_and_the_export_needs_no_lightning(pretrained,
                                                                              tmp_path,
                                                                              selip_cli):
    manifest, checkpoint = pretrained
    model = selip.load(checkpoint, device="cpu")
    assert isinstance(model, PretrainedSelip)
    volumes = _volumes(manifest)
    # exactly the training preprocessing: what the cache stores, as float32
    expected = torch.from_numpy(preprocess_volume(volumes[0], model.preprocess_settings))
    torch.testing.assert_close(model.preprocess(volumes[0])[0], expected.float(), rtol=0,
                               atol=0)
    images, texts = model.encode_images(volumes), model.encode_texts(TEXTS)
    assert images.shape == (3, model.embed_dim) and texts.shape == (2, model.embed_dim)
    torch.testing.assert_close(images.norm(dim=1), torch.ones(3))
    done = selip_cli("export", "--ckpt", str(checkpoint), "--out", str(tmp_path / "export"))
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "export"
    assert {p.name for p in folder.iterdir()} >= {"model.safetensors", "config.json",
                                                  "README.md", "text_model"}
    card = (folder / "README.md").read_text()
    assert "not for clinical use" in card and "manifest sha256" in card
    exported = selip.load(folder, device="cpu")
    assert (exported.encode_images(volumes) - images).abs().max() <= 1e-6
    assert (exported.encode_texts(TEXTS) - texts).abs().max() <= 1e-6
    assert exported.logit_scale == pytest.approx(model.logit_scale)
    # in a fresh process, loading the folder and embedding imports neither Lightning nor
    # MONAI (seconds of start-up each, for nothing an embedding needs)
    probe = ("import sys, selip; m = selip.load(sys.argv[1], 'cpu'); m.encode_texts(['x y']);"
             "m.encode_images([sys.argv[2]]); "
             "print(sorted({k.split('.')[0] for k in sys.modules} & {'lightning', "
             "'pytorch_lightning', 'monai'}))")
    out = subprocess.run([sys.executable, "-c", probe, str(folder), str(volumes[0])], env=ENV,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_similarity_and_zero_shot_are_the_scaled_cosines(pretrained, tmp_path):
    manifest, checkpoint = pretrained
    model = selip.load(checkpoint, device="cpu")
    volumes = _volumes(manifest)
    logits = model.similarity(volumes, TEXTS)
    expected = model.logit_scale * model.encode_images(volumes) @ model.encode_texts(TEXTS).T
    torch.testing.assert_close(logits, expected)
    names, probabilities = model.zero_shot(volumes, {"lesion": [TEXTS[0]],
                                                      "normal": [TEXTS[1]]})
    assert names == ["lesion", "normal"] and probabilities.shape == (3, 2)
    torch.testing.assert_close(probabilities.sum(1), torch.ones(3))
    torch.testing.assert_close(probabilities, logits.softmax(-1))  # one prompt per class
    one = model.encode_images(volumes[0])  # a single path, not in a list
    torch.testing.assert_close(one, model.encode_images([volumes[0]]))
    # an (array, affine) and a nibabel image give what the file gives
    image = nib.load(volumes[0])
    from_file = model.preprocess(volumes[0])
    torch.testing.assert_close(model.preprocess(image), from_file)  # type: ignore[arg-type]
    torch.testing.assert_close(model.preprocess((np.asarray(image.dataobj), image.affine)),
                               from_file)


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_bad_input_gets_one_line_naming_it(pretrained, tmp_path, selip_cli):
    _, checkpoint = pretrained
    with pytest.raises(InferenceError, match="not found"):
        selip.load(tmp_path / "missing.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(InferenceError, match=r"notes\.ckpt"):
        selip.load(text)
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "selip": {}, "x": _Payload(str(marker))}, evil)
    with pytest.raises(InferenceError, match=r"evil\.ckpt"):
        selip.load(evil)
    assert not marker.exists()  # the pickle payload never ran
    with pytest.raises(InferenceError, match=r"no config\.json"):
        selip.load(tmp_path)
    model = selip.load(checkpoint, device="cpu")
    for shape, name in (((8, 8), "flat"), ((8, 8, 8, 3), "series")):
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), path)
        with pytest.raises(VolumeError, match=rf"{name}\.nii\.gz") as raised:
            model.preprocess(path)
        assert "\n" not in str(raised.value)
    with pytest.raises(VolumeError, match="file not found"):
        model.preprocess(tmp_path / "nowhere.nii.gz")
    with pytest.raises(ValueError, match="text 1 is empty"):
        model.encode_texts(["fine", "  "])
    folder = tmp_path / "export"
    export = ("export", "--ckpt", str(checkpoint), "--out", str(folder))
    assert selip_cli(*export).returncode == 0
    again = selip_cli(*export)  # an existing, non-empty folder is not overwritten
    assert again.returncode == 2 and "not empty" in again.stderr
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InferenceError, match="does not match the sha256"):
        selip.load(folder)
    weights.unlink()
    with pytest.raises(InferenceError, match="missing its weights"):
        selip.load(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["weights_sha256"] and config["embed_dim"] == model.embed_dim


@pytest.mark.slow
def test_the_example_script_runs(pretrained, tmp_path, monkeypatch, capsys):
    """``python examples/use_trained_model.py ...``, run as that command runs it (as
    ``__main__``, with its arguments), in this process."""
    manifest, checkpoint = pretrained
    script = Path(__file__).resolve().parents[2] / "examples" / "use_trained_model.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--ckpt", str(checkpoint), "--volumes",
                                      str(manifest.parent / "exams"), "--out",
                                      str(tmp_path / "export")])
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "embedded 10 volumes" in out and "best matches" in out
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert float(out.strip().split()[-1]) <= 1e-6
