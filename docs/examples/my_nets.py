"""A network trained elsewhere: a tint that follows a strength control."""
import torch
from torch import nn


class Tint(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, image, strength):
        return torch.tanh(image + self.conv(image) * strength[:, :, None, None])


def make_tint():
    return Tint()
