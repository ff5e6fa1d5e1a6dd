import json

import pytest

from artforge.cli import main


@pytest.mark.slow
def test_compare_loss_layers_trains_every_candidate_and_writes_reports(tmp_path):
    out = tmp_path / "ll"
    assert main(["loss-layers", "--out", str(out), "--steps", "2", "--size", "32", "--quiet"]) == 0
    document = json.loads((out / "loss_layers.json").read_text())
    assert len(document["results"]) == 5 and {r["content_layer"] for r in document["results"]} == {
        "block2", "block4", "block7"}
    for row in document["results"]:
        assert 0 < row["style_colour_levels"] < 255 and -1 <= row["content_ssim"] <= 1
    assert (out / "loss_layers.png").stat().st_size > 0 and "| candidate" in (out / "loss_layers.md").read_text()


def test_a_missing_vgg_file_fails_before_any_training(tmp_path, capsys):
    out = tmp_path / "ll"
    assert main(["loss-layers", "--out", str(out), "--vgg", str(tmp_path / "missing.pth"), "--quiet"]) == 1
    assert "missing.pth do not exist" in capsys.readouterr().err and not out.exists()
