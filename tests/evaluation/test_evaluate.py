import json

import numpy as np

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
    assert set(a["diversity_by_class"]) <= {"circles", "grid", "splatter", "stripes", "waves"}
    assert b["diversity_by_class"] == pytest.approx(a["diversity_by_class"], rel=0.05)
    assert "not Inception" in (tmp_path / "local" / "evaluate.md").read_text()
    assert json.loads((tmp_path / "served" / "evaluate.json").read_text())["source"]["url"] == triton.grpc_url


@pytest.mark.slow
def test_the_command_line_and_what_it_refuses(dcgan_run, art32, style_run, tmp_path, capsys):
    assert main(["evaluate", str(dcgan_run), "--data", str(art32), "--count", "16", "--out", str(tmp_path)]) == 0
    assert "| FD | KID |" in capsys.readouterr().out
    with pytest.raises(ArtforgeError, match="needs --data"):
        evaluate(source=str(dcgan_run), count=16, out=str(tmp_path / "no-data"))
    with pytest.raises(ArtforgeError, match="too few"):
        evaluate(source=str(dcgan_run), data=str(art32), count=4, out=str(tmp_path / "few"))


@pytest.mark.slow
def test_a_style_model_is_measured_on_held_out_photos_against_its_style_images(style_run, tmp_path, monkeypatch):
    from artforge.families.style import evaluator as quality
    from artforge.training.synth import paint

    monkeypatch.setattr(quality, "PHOTOS", 2)  # the wiring is what is checked here: 2 photos show it as 8 do

    paths = []
    for name in ("waves", "splatter"):
        paths.append(tmp_path / f"{name}.png")
        paint(name, 64, seed=0, index=0).save(paths[-1])
    document = evaluate(source=str(style_run[0]), data=",".join(map(str, paths)), peer="magenta:3,17",
                        out=str(tmp_path / "style"))
    assert list(document["per_style"]) == ["ink", "mosaic"] == list(document["peer"]["per_style"])
    anchor = document["unchanged_photo"]
    assert anchor["content_ssim"] == pytest.approx(1.0) and anchor["content_feature_distance"] < 1e-9
    for name, row in rows_of(style_run[1], paths).items():  # each style's own output, against its own style image
        assert document["per_style"][name] == pytest.approx(row)
    ink, mosaic = document["per_style"].values()
    assert ink["style_gram_error"] != pytest.approx(mosaic["style_gram_error"], rel=1e-3)
    report = (tmp_path / "style" / "evaluate.md").read_text()
    assert "| ink |" in report and "| mosaic: magenta style 17 (peer) |" in report
    with pytest.raises(ArtforgeError, match="2 style.s. but 1 style image"):
        evaluate(source=str(style_run[0]), data=str(paths[0]), out=str(tmp_path / "one"))
    with pytest.raises(ArtforgeError, match="0 style image"):  # saved without training options: no paths known
        evaluate(source=str(style_run[0]), out=str(tmp_path / "none"))


def rows_of(net, style_paths) -> dict[str, dict[str, float]]:
    """The per-style rows, computed here: the network on the held-out crops (seed 0), style k scored
    against style image k."""
    import torch

    from artforge.evaluation.transfer import transfer_judge, transfer_quality
    from artforge.families.style import StyleServing
    from artforge.families.style import evaluator as quality
    from artforge.photos import photo_crops

    photos = photo_crops(quality.PHOTOS, quality.PHOTO_SIZE, quality.PHOTO_SIZE, 0, held_out=True)
    style_images, judge = quality.load_styles(style_paths, 2), transfer_judge()
    serving = StyleServing(net, float_output=False).eval()
    rows = {}
    for k, name in enumerate(("ink", "mosaic")):
        with torch.no_grad():
            out = serving(torch.from_numpy(photos), torch.eye(2)[[k] * len(photos)]).numpy()
        rows[name] = transfer_quality(out[:, None], photos, style_images[[k]], judge)
    return rows


@pytest.mark.slow
def test_the_peer_is_scored_with_the_peer_style_named_for_each_model_style():
    """Style images painted by the peer itself (its styles 3 and 17): the peer scores closer to each when
    asked for the style that painted it than for the other one."""
    from artforge.evaluation.transfer import transfer_judge
    from artforge.families.style.peer import get_peer
    from artforge.families.style.evaluator import score_peer
    from artforge.photos import photo_crops

    peer = get_peer("magenta")
    styles = np.concatenate([peer.stylise(peer.session(), photo_crops(1, 64, 64, 2), k) for k in (3, 17)])
    photos, judge = photo_crops(2, 64, 64, 0, held_out=True), transfer_judge()
    right = score_peer("magenta:3,17", ["ink", "mosaic"], photos, styles, judge)["per_style"]
    wrong = score_peer("magenta:17,3", ["ink", "mosaic"], photos, styles, judge)["per_style"]
    assert right["ink"]["peer_style"] == 3 and right["mosaic"]["peer_style"] == 17
    for name in ("ink", "mosaic"):
        assert right[name]["style_colour_levels"] < wrong[name]["style_colour_levels"]
    with pytest.raises(ArtforgeError, match="one peer style per model style .2."):
        score_peer("magenta:3", ["ink", "mosaic"], photos, styles, judge)
    with pytest.raises(ArtforgeError, match="unknown style peer 'picasso'"):
        score_peer("picasso:1,2", ["ink", "mosaic"], photos, styles, judge)
