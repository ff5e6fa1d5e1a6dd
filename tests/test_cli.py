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


def test_data_synth_from_the_command_line_paints_the_same_set_for_a_seed(tmp_path, capsys):
    from artforge.imaging import read_image

    sets = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["data", "synth", "--out", str(out), "--size", "32", "--per-style", "3", "--seed", "4",
                     "--styles", "waves", "grid", "--quiet"]) == 0
        sets.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))})
    assert sorted(sets[0]) == [f"{s}/{i:05d}.png" for s in ("grid", "waves") for i in range(3)]
    assert sets[0] == sets[1]  # the same seed paints the same files
    assert read_image(tmp_path / "a" / "waves" / "00000.png").shape == (32, 32, 3)
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(tmp_path / "a" / "waves" / "00000.png"), "--per-style", "1",
                 "--quiet"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1  # a file as the output folder: one line


def test_export_from_the_command_line_writes_what_the_function_writes(dcgan_run, tmp_path, capsys):
    from artforge.export.pipeline import export_checkpoint

    assert main(["export", str(dcgan_run), "--repository", str(tmp_path / "cli"), "--max-batch", "4"]) == 0
    out = capsys.readouterr().out
    assert "dcgan" in out and "FAIL" not in out and " ok" in out  # the parity lines are printed
    export_checkpoint(dcgan_run, tmp_path / "api", max_batch=4)
    for name in ("dcgan/config.pbtxt", "dcgan/1/model.onnx", "dcgan/1/model.py"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "api" / name).read_bytes(), name
    assert main(["export", str(tmp_path / "nothing"), "--repository", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing" in err
    assert sorted(p.name for p in (tmp_path / "cli" / "dcgan").iterdir()) == ["1", "config.pbtxt", "warmup"]


def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        return  # a GPU machine runs the check itself (docs/gpu.md)
    done = subprocess.run([sys.executable, "-m", "artforge.benchmarks.gpu_check", "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no CUDA GPU here" in done.stderr
    assert not (tmp_path / "g").exists()


def test_every_command_is_declared_where_the_cli_says():
    import dataclasses

    from artforge.cli import COMMANDS, declared
    from artforge.options import Command

    for name, where in COMMANDS.items():
        command = declared(where)
        assert isinstance(command, Command) and command.name == name.split()[-1], where
        assert dataclasses.is_dataclass(command.options) and command.help and command.examples, where


def test_a_command_imports_only_its_own_module(tmp_path):
    """`artforge serve` builds its parser without torch or any family (it starts in a fraction of a second);
    `artforge --help` lists every command, the families' verbs included."""
    import subprocess
    import sys

    probe = ("import sys; from artforge.cli import build_parser; build_parser({argv}); "
             "print(sorted(m for m in ('torch', 'artforge.registry', 'artforge.export.pipeline') if m in sys.modules))")
    for argv, expected in ((["serve", "--repository", "r"], "[]"), (["stream", "--help"], "[]"),
                           (["data", "synth"], "[]"),
                           ([], "['artforge.export.pipeline', 'artforge.registry', 'torch']")):
        out = subprocess.run([sys.executable, "-c", probe.format(argv=argv)], capture_output=True, text=True,
                             check=True, cwd=tmp_path).stdout.strip()
        assert out == expected, (argv, out)
    listed = subprocess.run([sys.executable, "-m", "artforge", "--help"], capture_output=True, text=True,
                            check=True, cwd=tmp_path).stdout
    for name in ("serve", "bench", "generate", "stylize", "critique", "train", "data"):
        assert f"    {name} " in listed, name
