import json

from artforge.families.style.init_gain import first_step_at_or_below, quarter_steps
from artforge.cli import main


def test_the_first_step_at_or_below_a_loss_and_the_quarters():
    assert first_step_at_or_below([5.0, 4.0, 3.0, 3.5], 3.2) == 3
    assert first_step_at_or_below([5.0, 4.0], 3.0) is None
    assert quarter_steps(300) == [75, 150, 225, 300] and quarter_steps(2) == [1, 2]


def test_init_gain_trains_base_scratch_and_finetune_and_reports(tmp_path, capsys):
    out = tmp_path / "ig"
    assert main(["init-gain", "--out", str(out), "--steps", "4", "--size", "32", "--quiet"]) == 0
    document = json.loads((out / "init_gain.json").read_text())
    assert [p["scratch_step"] for p in document["points"]] == [1, 2, 3, 4]
    finetune = json.loads((out / "finetune" / "train_options.json").read_text())
    assert finetune["init"] == str(out / "base") and "| scratch step |" in capsys.readouterr().out
    assert main(["init-gain", "--out", str(out), "--style", "only-one.png"]) == 1
    assert "exactly two images" in capsys.readouterr().err
