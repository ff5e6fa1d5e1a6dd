"""The networks of every family: nn.Modules and their config dataclasses, nothing else.

Families (artforge.families) say which network a checkpoint holds; training, export and serving
rebuild it from the config stored with the weights.
"""
from artforge.models.dcgan import DCGANConfig, Discriminator, Generator
from artforge.models.style import StyleNetConfig, StyleTransferNet

__all__ = ["DCGANConfig", "Generator", "Discriminator", "StyleNetConfig", "StyleTransferNet"]
