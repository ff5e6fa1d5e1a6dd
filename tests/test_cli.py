"""`artforge train FAMILY` is generated from each family's options dataclass."""
import json

from artforge.checkpoint import load_checkpoint
from artforge.cli import main

TINY = ["--size", "32", "--batch-size", "8", "--g-width", "8", "--d-width", "8", "--z-dim", "16", "--quiet"]


def test_train_dcgan_from_the_command_line_and_resume_it(art32, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "dcgan", "--data", str(art32), "--out", str(run), "--steps", "2", *TINY]) == 0
    assert "newest checkpoint" in capsys.readouterr().out
    saved = json.loads((run / "train_options.json").read_text())
    assert saved["g_width"] == 8 and saved["steps"] == 2 and saved["lr"] == 2e-4  # the dataclass default
    assert main(["train", "dcgan", "--out", str(run), "--resume", "--steps", "3"]) == 0
    assert load_checkpoint(run).step == 3
    assert json.loads((run / "train_options.json").read_text())["g_width"] == 8  # kept from the run
    assert main(["train", "dcgan", "--out", str(run), "--resume", "--g-width", "16"]) == 1
    assert "started with g_width=8" in capsys.readouterr().err


def test_train_style_from_the_command_line_collects_repeated_styles(tmp_path):
    from artforge.training.synth import paint

    paths = []
    for style in ("waves", "grid"):
        paths += [str(tmp_path / f"{style}.png")]
        paint(style, 64, seed=0, index=0).save(paths[-1])
    run = tmp_path / "style"
    code = main(["train", "style", "--style", paths[0], "--style", paths[1], "--out", str(run), "--size", "32",
                 "--steps", "1", "--batch-size", "2", "--quiet"])
    assert code == 0
    checkpoint = load_checkpoint(run)
    assert checkpoint.meta["styles"] == ["waves", "grid"] and checkpoint.meta["config"]["num_styles"] == 2
