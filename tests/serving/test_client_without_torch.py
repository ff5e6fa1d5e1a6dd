"""A client machine needs no PyTorch: the contract, the request limits and the gRPC client import none."""
import subprocess
import sys

BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is not installed on this client machine")
sys.meta_path.insert(0, BlockTorch())
import artforge.contract, artforge.serving.client, artforge.serving.request_limits
import numpy as np
spec = artforge.contract.TensorSpec("z", "float32", (4,))
assert artforge.contract.check_inputs((spec,), {"z": np.zeros((2, 4), np.float32)}, 8) == 2
print("ok", "torch" in sys.modules)
"""


def test_the_client_and_the_contract_import_no_torch():
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ok", "False"]
