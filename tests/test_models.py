import pytest
import torch

from artforge.families.dcgan.network import DCGANConfig, Discriminator, Generator


@pytest.mark.parametrize("size", [32, 64])
def test_generator_and_discriminator_shapes(size):
    config = DCGANConfig(image_size=size, num_classes=5, z_dim=16, g_width=8, d_width=8)
    G, D = Generator(config).eval(), Discriminator(config).eval()
    z, labels = torch.randn(3, 16), torch.tensor([0, 2, 4])
    images = G(z, labels)
    assert images.shape == (3, 3, size, size)
    assert images.min() >= -1 and images.max() <= 1
    logits, classes = D(images, labels)
    assert logits.shape == (3,) and classes is None  # projection only, the default


@pytest.mark.parametrize("conditioning, projects, classifies", [("projection", True, False), ("acgan", False, True),
                                                                ("both", True, True)])
def test_the_discriminator_is_told_the_class_as_configured(conditioning, projects, classifies):
    config = DCGANConfig(num_classes=5, z_dim=16, g_width=8, d_width=8, conditioning=conditioning)
    D = Discriminator(config).eval()
    images, labels = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 4])
    logits, classes = D(images, labels)
    assert (classes is not None and classes.shape == (4, 5)) == classifies
    names = {name.split(".")[0] for name in D.state_dict()}
    assert ("project" in names) == projects and ("classify" in names) == classifies
    # with projection the real/fake logit depends on the label; without, only the class logits name it
    other, other_classes = D(images, torch.tensor([1, 2, 3, 0]))
    assert (not torch.allclose(other, logits)) == projects
    assert classes is None or torch.equal(other_classes, classes)


def test_an_unknown_conditioning_is_refused_and_old_configs_project():
    with pytest.raises(ValueError, match="one of projection, acgan, both"):
        DCGANConfig(conditioning="cgan")
    assert DCGANConfig(**{"image_size": 32, "num_classes": 5}).conditioning == "projection"


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
    """A config that went through JSON (as in checkpoint.json) and the same seed give the same network:
    the same weights, so the same pictures; another width gives another network."""
    import json
    from dataclasses import asdict

    config = DCGANConfig(image_size=64, num_classes=2, z_dim=8, g_width=4, d_width=4)
    torch.manual_seed(3)
    a = Generator(config).eval()
    torch.manual_seed(3)
    b = Generator(DCGANConfig(**json.loads(json.dumps(asdict(config))))).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    z, labels = torch.randn(2, 8), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(a(z, labels), b(z, labels))
    wider = Generator(DCGANConfig(**{**asdict(config), "g_width": 5})).state_dict()
    assert any(wider[k].shape != sa[k].shape for k in sa)


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="32 or 64"):
        DCGANConfig(image_size=48)
