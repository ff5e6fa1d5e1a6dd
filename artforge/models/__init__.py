"""The networks of the built-in families under one import (each lives in its family's package,
artforge/families/NAME/network.py); kept so that `from artforge.models import DCGANConfig` works.
"""
from artforge.families.dcgan.network import DCGANConfig, Discriminator, Generator
from artforge.families.style.network import StyleNetConfig, StyleTransferNet

__all__ = ["DCGANConfig", "Generator", "Discriminator", "StyleNetConfig", "StyleTransferNet"]
