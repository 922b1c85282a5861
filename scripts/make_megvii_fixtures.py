"""Records the seed's Megvii ShuffleNetV1 results as golden fixtures: tests/fixtures/megvii_v1.pt.

    .venv/bin/python scripts/make_megvii_fixtures.py [--out PATH]

Needs the seed's Megvii code (``megvii_blocks.py``, ``megvii_network.py``), found as the tests
find it (tests/megvii_seed.py: ``<repo>/../shared/seed`` or ``SHUFFLENET_FUSED_SEED_DIR``).
tests/test_megvii_fixtures.py checks our ``ShuffleV1Block``/``ShuffleNetV1`` (fused and not)
against the file, so the drop-in claim is tested on clones that do not have the seed.

Only the seed's classes run here, in float64, from random weights and random BatchNorm
running statistics (a fixed ``torch.Generator`` seed). For each model the file records the
state dict, an input, the eval-mode output, the training-mode output, the gradients of the
input and of every parameter for a fixed random ``grad_output`` (of the training-mode
output), and the buffers (running statistics, ``num_batches_tracked``) after that one
training-mode forward.

The file is a plain dict of tensors, strings, ints and floats (``torch.load(path,
weights_only=True)``), kept under 2 MB:

* states are stored as int8 codes and a power-of-two scale per tensor: the float64 value is
  ``codes.double() * scale``, exactly, and every computation runs in float64 on those values;
  ``num_batches_tracked`` is stored as is (int64);
* inputs and ``grad_output`` hold float32 values (the network's input: 0-255 uint8 pixels,
  the convention of Megvii's weights), converted to float64 before use;
* results are float64 (compared to 1e-10 relative), except the network's, which do not fit
  (its parameter gradients alone are 2 MB in float64): its parameter gradients and buffers
  are rounded to float32, its input gradient to bfloat16 (``NETWORK_STORAGE``), and the test
  compares each to the rounding of the dtype it is stored in;
* tensors of one dtype share one storage, so the zip archive holds a few records instead of
  hundreds (each costs a header and up to 63 bytes of alignment).

The layout of the file and the recorded steps (``run``) are in tests/megvii_records.py,
shared with the test.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import math
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from megvii_records import FIXTURE, FORMAT, decode_state, run  # noqa: E402
from megvii_seed import SEED_DIR, load_megvii, seed_files  # noqa: E402

SEED = 20261202

# Megvii's block constructor arguments (mid_channels = oup // 4 as its network builds them):
# stride 1 and 2, group 3 and 8, first_group True and False; ksize 3 as in the network, plus
# 5 and 7, which the fused op also supports.
BLOCKS = {
    "g3-s2-first": dict(inp=12, oup=36, group=3, first_group=True, mid_channels=9, ksize=3, stride=2),
    "g3-s1": dict(inp=12, oup=12, group=3, first_group=False, mid_channels=9, ksize=3, stride=1),
    "g3-s2": dict(inp=12, oup=36, group=3, first_group=False, mid_channels=9, ksize=3, stride=2),
    "g8-s1": dict(inp=16, oup=16, group=8, first_group=False, mid_channels=16, ksize=3, stride=1),
    "g8-s2-first": dict(inp=16, oup=48, group=8, first_group=True, mid_channels=16, ksize=3, stride=2),
    "g8-s1-first": dict(inp=16, oup=16, group=8, first_group=True, mid_channels=16, ksize=3, stride=1),
    "g3-s2-k5": dict(inp=12, oup=36, group=3, first_group=False, mid_channels=9, ksize=5, stride=2),
    "g3-s1-k7": dict(inp=12, oup=12, group=3, first_group=False, mid_channels=6, ksize=7, stride=1),
}
BLOCK_INPUT = (2, 5, 6)  # N, H, W: odd and even sizes, not square
# The smallest network Megvii defines, with few classes. Its AvgPool2d(7) needs a 7x7 last
# feature map, i.e. an input side of at least 193 (each of the 5 stride-2 stages rounds up).
NETWORK = dict(group=3, model_size="0.5x", n_class=10)
NETWORK_INPUT = (1, 193, 193)
# How the network's results are stored (the blocks' and the network's outputs: float64).
NETWORK_STORAGE = {"grad_input": torch.bfloat16, "grads": torch.float32, "buffers_after": torch.float32}
BLOCK_STORAGE = dict.fromkeys(NETWORK_STORAGE, torch.float64)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _power_of_two_scale(amplitude: float) -> float:
    """A scale for codes in [-127, 127] that reach about ``amplitude``."""
    return 2.0 ** round(math.log2(amplitude / 127))


def random_state(model: nn.Module, gen: torch.Generator) -> tuple[dict[str, Tensor], dict[str, float]]:
    """Random int8 codes and power-of-two scales for every entry of ``model.state_dict()``.

    Conv and linear weights are uniform with the spread of Megvii's initialisation (std 0.01
    for ``first_conv`` and the classifier, ``1 / fan_in`` otherwise); BatchNorm weights lie in
    [0.5, 1.5), biases and running means in [-0.5, 0.5], running variances in [0.5, 2).
    """
    codes: dict[str, Tensor] = {}
    scales: dict[str, float] = {}

    def draw(key: str, shape: torch.Size, low: int, high: int, scale: float) -> None:
        codes[key] = torch.randint(low, high, shape, generator=gen, dtype=torch.int8)
        scales[key] = scale

    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            std = 0.01 if "first" in name or isinstance(module, nn.Linear) else 1.0 / module.weight.shape[1]
            draw(prefix + "weight", module.weight.shape, -127, 128, _power_of_two_scale(math.sqrt(3) * std))
            assert module.bias is None  # Megvii's convolutions and classifier have none
        elif isinstance(module, nn.BatchNorm2d):
            c = (module.num_features,)
            draw(prefix + "weight", c, 32, 96, 2.0**-6)
            draw(prefix + "bias", c, -127, 128, 2.0**-8)
            draw(prefix + "running_mean", c, -127, 128, 2.0**-8)
            draw(prefix + "running_var", c, 32, 128, 2.0**-6)
            codes[prefix + "num_batches_tracked"] = torch.randint(0, 100, (), generator=gen, dtype=torch.int64)
    assert codes.keys() == model.state_dict().keys()
    return codes, scales


def record(
    model: nn.Module, gen: torch.Generator, x: Tensor, grad_output_shape: tuple[int, ...],
    storage: dict[str, torch.dtype],
) -> dict:
    """A record of ``model``: random state, ``run`` (float64), results stored as ``storage`` says."""
    codes, scales = random_state(model, gen)
    grad_output = torch.randn(grad_output_shape, generator=gen, dtype=torch.float32)
    got = run(model, decode_state(codes, scales), x, grad_output)
    return {
        "state": codes,
        "scales": scales,
        "input": x,
        "grad_output": grad_output,
        "eval_output": got["eval_output"],
        "train_output": got["train_output"],
        "grad_input": got["grad_input"].to(storage["grad_input"]),
        "grads": {name: g.to(storage["grads"]) for name, g in got["grads"].items()},
        "buffers_after": {
            name: b if b.dtype == torch.int64 else b.to(storage["buffers_after"])
            for name, b in got["buffers_after"].items()
        },
    }


def _share_storages(obj: object) -> object:
    """``obj`` with its tensors replaced by views into one flat tensor per dtype."""
    tensors: list[Tensor] = []

    def collect(o: object) -> None:
        if isinstance(o, Tensor):
            tensors.append(o)
        elif isinstance(o, dict):
            for v in o.values():
                collect(v)

    collect(obj)
    flats: dict[torch.dtype, Tensor] = {}
    offsets: dict[int, int] = {}
    for dtype in dict.fromkeys(t.dtype for t in tensors):
        group = [t for t in tensors if t.dtype == dtype]
        flats[dtype] = torch.cat([t.detach().reshape(-1) for t in group])
        offset = 0
        for t in group:
            offsets[id(t)] = offset
            offset += t.numel()

    def rebuild(o: object) -> object:
        if isinstance(o, Tensor):
            start = offsets[id(o)]
            return flats[o.dtype][start : start + o.numel()].view(o.shape)
        if isinstance(o, dict):
            return {k: rebuild(v) for k, v in o.items()}
        return o

    return rebuild(obj)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()

    megvii = load_megvii()
    if megvii is None:
        sys.exit(f"the seed's Megvii code is not in {SEED_DIR} (set SHUFFLENET_FUSED_SEED_DIR)")
    gen = torch.Generator().manual_seed(SEED)

    blocks = {}
    n, h, w = BLOCK_INPUT
    for name, config in BLOCKS.items():
        kwargs = dict(config)
        inp, oup = kwargs.pop("inp"), kwargs.pop("oup")
        block = megvii.ShuffleV1Block(inp, oup, **kwargs)
        x = torch.randn(n, inp, h, w, generator=gen, dtype=torch.float32)
        out_hw = (h, w) if config["stride"] == 1 else ((h + 1) // 2, (w + 1) // 2)
        blocks[name] = {"config": config, **record(block, gen, x, (n, oup, *out_hw), BLOCK_STORAGE)}

    with contextlib.redirect_stdout(io.StringIO()):  # the seed prints in its constructor
        network = megvii.ShuffleNetV1(**NETWORK)
    x = torch.randint(0, 256, (NETWORK_INPUT[0], 3, *NETWORK_INPUT[1:]), generator=gen, dtype=torch.uint8)
    grad_output_shape = (NETWORK_INPUT[0], NETWORK["n_class"])
    network_record = {"config": NETWORK, **record(network, gen, x, grad_output_shape, NETWORK_STORAGE)}

    blocks_path, network_path = seed_files()
    fixture = {
        "format": FORMAT,
        "provenance": {
            "script": "scripts/make_megvii_fixtures.py",
            "torch": str(torch.__version__),
            "generator_seed": SEED,
            "seed_files": {blocks_path.name: _sha256(blocks_path), network_path.name: _sha256(network_path)},
        },
        "blocks": blocks,
        "network": network_record,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_share_storages(fixture), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(blocks)} blocks and a network")


if __name__ == "__main__":
    main()
