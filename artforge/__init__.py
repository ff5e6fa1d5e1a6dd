"""artforge: generative-art models from PyTorch training to real-time Triton serving."""
__version__ = "0.1.0"
