"""A FAKE of the `tensorrt` Python module: the part of TensorRT 10's API that export/tensorrt.py uses.

It builds and runs nothing. It records the calls made (`calls`), and for each call whose outcome
real TensorRT can report as failure (None from deserialize_cuda_engine and create_execution_context,
False from set_timing_cache and set_input_shape) a test picks the outcome in `outcomes`. Only names
that TensorRT 10's bindings have are defined (python/src/infer/pyCore.cpp, pyGraph.cpp, pyInt8.cpp),
so a misspelt or removed API fails here as it would on a GPU machine.
"""
from __future__ import annotations

import types

__version__ = "10.5.0.18"
calls: list[tuple] = []
outcomes = {"parse": True, "build": b"engine-bytes", "engine": True, "context": True, "timing_refused": set(),
            "input_shape": True, "memory": [1 << 20], "layers": ["CONVOLUTION"]}


def reset(version: str = "10.5.0.18") -> None:
    global __version__
    __version__ = version
    calls.clear()
    outcomes.update(parse=True, build=b"engine-bytes", engine=True, context=True, timing_refused=set(),
                    input_shape=True, memory=[1 << 20], layers=["CONVOLUTION"])


class Logger:
    WARNING = "WARNING"

    def __init__(self, severity):
        self.severity = severity


BuilderFlag = types.SimpleNamespace(FP16="FP16", BF16="BF16", INT8="INT8", VERSION_COMPATIBLE="VERSION_COMPATIBLE",
                                    OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS")
LayerType = types.SimpleNamespace(CONVOLUTION="CONVOLUTION", NORMALIZATION="NORMALIZATION", ACTIVATION="ACTIVATION")
float32 = "float32"


class ILayer:
    """A layer of the fake network; `outcomes['layers']` lists the network's layer types."""

    def __init__(self, kind: str):
        self.type, self.num_outputs, self.precision, self.output_types = kind, 1, None, {}

    def set_output_type(self, index, dtype):
        self.output_types[index] = dtype


class INormalizationLayer(ILayer):
    compute_precision = None


class NetworkDefinition:
    def __init__(self):
        self.layers = [ILayer(kind) for kind in outcomes["layers"]]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, index):
        return self.layers[index]
MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
ExecutionContextAllocationStrategy = types.SimpleNamespace(STATIC="STATIC", ON_PROFILE_CHANGE="ON_PROFILE_CHANGE")


class IInt8EntropyCalibrator2:
    def __init__(self):
        calls.append(("IInt8EntropyCalibrator2.__init__",))


class OptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))


class TimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self):
        return b"timing-cache"


class BuilderConfig:
    def __init__(self):
        self.flags, self.profiles, self.int8_calibrator = [], [], None

    def set_memory_pool_limit(self, pool, size):
        calls.append(("set_memory_pool_limit", pool, size))

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag):
        self.flags.append(flag)

    def set_calibration_profile(self, profile):
        calls.append(("set_calibration_profile", profile))

    def create_timing_cache(self, data):
        return TimingCache(bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        calls.append(("set_timing_cache", cache.data, ignore_mismatch))
        return cache.data not in outcomes["timing_refused"]

    def get_timing_cache(self):
        return TimingCache(b"")


class Builder:
    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags):
        calls.append(("create_network", flags))
        network = NetworkDefinition()
        calls.append(("network", network))
        return network

    def create_builder_config(self):
        return BuilderConfig()

    def create_optimization_profile(self):
        return OptimizationProfile()

    def build_serialized_network(self, network, config):
        calls.append(("build_serialized_network", config))
        return outcomes["build"]


class OnnxParser:
    num_errors = 1

    def __init__(self, network, logger):
        pass

    def parse(self, data):
        return outcomes["parse"]

    def get_error(self, index):
        return "fake parser error"


class ExecutionContext:
    def set_optimization_profile_async(self, index, stream):
        calls.append(("set_optimization_profile_async", index))
        return True

    def set_input_shape(self, name, shape):
        calls.append(("set_input_shape", name, shape))
        return outcomes["input_shape"]


class CudaEngine:
    @property
    def num_optimization_profiles(self):
        return len(outcomes["memory"])

    def get_device_memory_size_for_profile_v2(self, index):
        return outcomes["memory"][index]

    def create_execution_context(self, strategy):
        calls.append(("create_execution_context", strategy))
        return ExecutionContext() if outcomes["context"] else None


class Runtime:
    def __init__(self, logger):
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, data):
        calls.append(("deserialize_cuda_engine", self.engine_host_code_allowed))
        return CudaEngine() if outcomes["engine"] else None
