import pytest
import torch

from artforge.models import DCGANConfig, Discriminator, Generator


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size):
    config = DCGANConfig(image_size=size, num_classes=5, z_dim=16, g_width=8, d_width=8)
    G, D = Generator(config).eval(), Discriminator(config).eval()
    z, labels = torch.randn(3, 16), torch.tensor([0, 2, 4])
    images = G(z, labels)
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert D(images, labels).shape == (3,)


def test_the_label_changes_the_image():
    torch.manual_seed(0)
    config = DCGANConfig(num_classes=3, z_dim=16, g_width=8, d_width=8)
    G = Generator(config).eval()
    with torch.no_grad():
        for norm in G.norms:  # at init every style shares one scale and shift; make them differ
            norm.shift.weight.normal_()
        z = torch.randn(1, 16).repeat(3, 1)
        images = G(z, torch.arange(3))
    scale = images.abs().mean()  # untrained, eval-mode outputs are tiny: compare relative to them
    assert (images[0] - images[1]).abs().mean() > 0.1 * scale
    assert (images[1] - images[2]).abs().mean() > 0.1 * scale


def test_the_same_config_builds_the_same_network():
    config = DCGANConfig(image_size=64, num_classes=2, z_dim=8, g_width=4, d_width=4)
    a, b = Generator(config), Generator(DCGANConfig(**config.__dict__))
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="32 or 64"):
        DCGANConfig(image_size=48)
