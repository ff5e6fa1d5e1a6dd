"""A Triton model's config.pbtxt as text and back, with Triton's own schema: what export writes and what
serving, the fuzzer and the GPU container check read. Torch-free, like the client."""
from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc


def config_text(config: mc.ModelConfig) -> str:
    header = "# written by artforge export, generated from the model family's spec\n"
    return header + text_format.MessageToString(config)


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt with Triton's schema; a typo raises."""
    return text_format.Parse(text, mc.ModelConfig())


def runtime_of(config: mc.ModelConfig) -> str:
    """'python' for the embedded runtime, or the native backend's or platform's name."""
    return config.backend or config.platform
