import json

import pytest

from artforge.cli import main
from artforge.errors import ArtforgeError
from artforge.evaluation.evaluate import evaluate


def test_a_checkpoint_and_its_served_model_measure_the_same(dcgan_run, art32, triton, tmp_path):
    local = evaluate(source=str(dcgan_run), data=str(art32), count=24, batch=8, out=str(tmp_path / "local"))
    served = evaluate(source="dcgan", url=triton.grpc_url, data=str(art32), count=24, batch=8,
                      out=str(tmp_path / "served"))
    a, b = local["quality"], served["quality"]
    assert a["generated"] == b["generated"] == 24 and a["real"] == 24
    # the same requests for the same seed; pixels agree within a grey level, so the measures nearly do
    assert b["fd"] == pytest.approx(a["fd"], rel=0.02) and b["precision"] == pytest.approx(a["precision"], abs=0.1)
    assert "EfficientNet-Lite0" in a["feature_space"]
    assert "not Inception" in (tmp_path / "local" / "evaluate.md").read_text()
    assert json.loads((tmp_path / "served" / "evaluate.json").read_text())["source"]["url"] == triton.grpc_url


def test_the_command_line_and_what_it_refuses(dcgan_run, art32, style_run, tmp_path, capsys):
    assert main(["evaluate", str(dcgan_run), "--data", str(art32), "--count", "16", "--out", str(tmp_path)]) == 0
    assert "| FD | KID |" in capsys.readouterr().out
    with pytest.raises(ArtforgeError, match="evaluate measures generators"):
        evaluate(source=str(style_run[0]), data=str(art32), count=16, out=str(tmp_path / "style"))
    with pytest.raises(ArtforgeError, match="too few"):
        evaluate(source=str(dcgan_run), data=str(art32), count=4, out=str(tmp_path / "few"))
