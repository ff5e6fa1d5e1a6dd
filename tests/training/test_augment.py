import torch

from artforge.training.augment import cutout, diff_augment, translate


def test_diff_augment_is_seeded_differentiable_and_does_what_it_says():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    a = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(3))
    b = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    ramp = torch.arange(1.0, 17.0).repeat(1, 3, 16, 1)  # value = column + 1
    shifted = translate(ramp, torch.Generator().manual_seed(0))
    row = shifted[0, 0, 8]
    inside = row[row > 0]
    assert torch.all(inside[1:] - inside[:-1] == 1) and (row == 0).sum() <= 2  # a shift of at most 2 px
    holes = (cutout(torch.ones(8, 3, 16, 16), torch.Generator().manual_seed(0))[:, 0] == 0).sum(dim=(1, 2))
    assert torch.all(holes <= 64) and holes.max() == 64  # an 8x8 square, clipped where it hangs over
    assert torch.equal(diff_augment(x, "none", torch.Generator()), x)
