"""What to measure: ShuffleNetV1 configurations, their depthwise layers and blocks, and cases.

Shapes are derived from Megvii's ShuffleNetV1 (``/work/shared/seed/megvii_network.py``) at
input 224: first conv (stride 2) 224 -> 112, max pool -> 56, then three stages of 4, 8 and 4
units. The first unit of a stage has stride 2 and sees the stage's input resolution
(56, 28, 14); the others have stride 1 at half that (28, 14, 7). Each unit's depthwise conv
has ``mid = out_channels // 4`` channels, and the seed's channel shuffle after it equals
``F.channel_shuffle(x, mid // group)`` (docs/design.md section 3), i.e. order ``"shuffle_last"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shufflenet_fused.models.network import STAGE_OUT_CHANNELS, STAGE_REPEATS  # Megvii's stage widths

STAGE_INPUT_H = (56, 28, 14)  # at input 224
INPUT_SIZE = 224
MODEL_SIZES = ("0.5x", "1.0x", "1.5x", "2.0x")
GROUPS = (3, 8)
DEFAULT_CONFIG = "1.0x-g3"
ALL_CONFIGS = tuple(f"{size}-g{g}" for g in GROUPS for size in MODEL_SIZES)

LEVELS = ("op", "block", "model")
MODES = ("eval", "train")
LAYOUTS = ("nchw", "channels_last")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# docs/design.md section 10: the six CPU shapes (N, C, H, stride) of ShuffleNetV1 1.0x g3.
# (1, 120, 28, 1) and (1, 240, 14, 1) are stride 1 at the input resolution of their stage's
# stride-2 unit: they are not literally layers of the network (which has (120, 28, 2) and
# (240, 14, 2)); `--shapes network` runs the network's own.
DESIGN_CPU_SHAPES: tuple[tuple[int, int, int, int], ...] = (
    (1, 60, 56, 2),
    (1, 120, 28, 1),
    (1, 240, 14, 1),
    (32, 60, 28, 1),
    (32, 120, 14, 1),
    (32, 240, 7, 1),
)
DEFAULT_BATCHES = {"cpu": (1, 32), "cuda": (1, 64, 256)}


def parse_config(name: str) -> tuple[str, int]:
    """``"1.0x-g3"`` -> ``("1.0x", 3)``."""
    try:
        size, g = name.split("-g")
        group = int(g)
    except ValueError:
        raise ValueError(f"config must look like 1.0x-g3, got {name!r}") from None
    if group not in STAGE_OUT_CHANNELS or size not in STAGE_OUT_CHANNELS[group]:
        raise ValueError(f"unknown config {name!r}; known: {', '.join(ALL_CONFIGS)}")
    return size, group


@dataclass(frozen=True)
class OpSpec:
    """One depthwise layer: channels, input height (= width), stride, kernel, shuffle groups."""

    c: int
    h: int
    stride: int
    groups: int  # torch.nn.ChannelShuffle groups, = C // G for the seed's order
    k: int = 3
    order: str = "shuffle_last"
    where: str = ""  # e.g. "stage3.1-7" when derived from a network
    config: str = ""  # e.g. "1.0x-g3" when derived from a network

    def label(self) -> str:
        k = "" if self.k == 3 else f" k{self.k}"
        return f"C={self.c} H={self.h} s{self.stride}{k}"


@dataclass(frozen=True)
class BlockSpec:
    """One ShuffleV1Block of a network, with its input resolution."""

    inp: int
    oup: int
    mid: int
    stride: int
    first_group: bool
    group: int
    h: int
    where: str = ""
    config: str = ""

    def label(self) -> str:
        return f"{self.where} {self.inp}->{self.oup} H={self.h} s{self.stride}".strip()


@dataclass(frozen=True)
class ModelSpec:
    model_size: str
    group: int
    input_size: int = INPUT_SIZE

    def label(self) -> str:
        return f"{self.model_size}-g{self.group}"


Spec = OpSpec | BlockSpec | ModelSpec


@dataclass(frozen=True)
class Case:
    """One measurement: a spec at a batch size, in a mode, dtype and layout, on a device."""

    level: str
    spec: Spec
    batch: int
    mode: str
    dtype: str = "float32"
    layout: str = "nchw"
    device: str = "cpu"

    @property
    def name(self) -> str:
        return f"N={self.batch} {self.spec.label()}"

    @property
    def key(self) -> str:
        return f"{self.level}|{self.name}|{self.mode}|{self.dtype}|{self.layout}"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def input_shape(self) -> tuple[int, int, int, int]:
        s = self.spec
        if isinstance(s, OpSpec):
            return (self.batch, s.c, s.h, s.h)
        if isinstance(s, BlockSpec):
            return (self.batch, s.inp, s.h, s.h)
        return (self.batch, 3, s.input_size, s.input_size)

    def trainable(self) -> bool:
        """BatchNorm in training needs more than one value per channel."""
        s = self.spec
        if isinstance(s, (OpSpec, BlockSpec)):
            ho = (s.h - 1) // s.stride + 1
            return self.batch * ho * ho > 1
        return True


def network_dw_layers(config: str) -> list[OpSpec]:
    """The distinct depthwise layers of a ShuffleNetV1 configuration at input 224."""
    return [
        OpSpec(c=b.mid, h=b.h, stride=b.stride, groups=b.mid // b.group, where=b.where, config=config)
        for b in network_blocks(config)
    ]


def network_blocks(config: str) -> list[BlockSpec]:
    """The distinct ShuffleV1Blocks of a configuration: per stage its first unit and the rest."""
    size, group = parse_config(config)
    soc = STAGE_OUT_CHANNELS[group][size]
    blocks = []
    inp = soc[1]
    for stage, (repeats, h) in enumerate(zip(STAGE_REPEATS, STAGE_INPUT_H, strict=True)):
        out = soc[stage + 2]
        name = f"stage{stage + 2}"
        rest = f"{name}.1-{repeats - 1}"
        blocks.append(BlockSpec(inp, out, out // 4, 2, stage == 0, group, h, where=f"{name}.0", config=config))
        blocks.append(BlockSpec(out, out, out // 4, 1, False, group, h // 2, where=rest, config=config))
        inp = out
    return blocks


def parse_op_shape(text: str, group: int = 3) -> tuple[int, OpSpec]:
    """``"N,C,H,stride[,k]"`` -> (batch, OpSpec) with shuffle groups C // group."""
    parts = [int(p) for p in text.split(",")]
    if len(parts) not in (4, 5):
        raise ValueError(f"--op-shape wants N,C,H,stride[,k], got {text!r}")
    n, c, h, stride = parts[:4]
    k = parts[4] if len(parts) == 5 else 3
    if c % group:
        raise ValueError(f"--op-shape {text!r}: C={c} is not divisible by the group {group}")
    return n, OpSpec(c=c, h=h, stride=stride, groups=c // group, k=k, where="custom")


def build_cases(
    levels: list[str],
    device: str,
    modes: list[str],
    configs: list[str],
    batches: list[int] | None,
    dtypes: list[str],
    layouts: list[str],
    shapes: str = "auto",
    op_shapes: list[str] | None = None,
) -> list[Case]:
    """Every case of a run, in the order they are measured.

    Op level shapes: ``shapes="design"`` is docs/design.md section 10's six CPU shapes (1.0x g3);
    ``"network"`` the distinct depthwise layers of each config at each batch; ``"auto"``
    picks design on CPU with the default config and batches, network otherwise.
    ``op_shapes`` ("N,C,H,stride[,k]") replaces both.
    """
    cases: list[Case] = []
    default_batches = list(DEFAULT_BATCHES[device])
    use_batches = batches or default_batches
    for level in levels:
        specs: list[tuple[int, Spec]] = []
        if level == "op":
            if op_shapes:
                _, group = parse_config(configs[0])
                specs = [parse_op_shape(t, group) for t in op_shapes]
            else:
                mode = shapes
                if mode == "auto":
                    plain = device == "cpu" and configs == [DEFAULT_CONFIG] and not batches
                    mode = "design" if plain else "network"
                if mode == "design":
                    specs = [
                        (n, OpSpec(c=c, h=h, stride=s, groups=c // 3, where="docs/design.md 10"))
                        for n, c, h, s in DESIGN_CPU_SHAPES
                    ]
                else:
                    specs = [(n, spec) for cfg in configs for n in use_batches for spec in network_dw_layers(cfg)]
        elif level == "block":
            specs = [(n, spec) for cfg in configs for n in use_batches for spec in network_blocks(cfg)]
        elif level == "model":
            specs = []
            for cfg in configs:
                size, group = parse_config(cfg)
                specs += [(n, ModelSpec(size, group)) for n in use_batches]
        else:
            raise ValueError(f"unknown level {level!r}")
        for dtype in dtypes:
            for layout in layouts:
                for n, spec in specs:
                    for mode in modes:
                        cases.append(Case(level, spec, n, mode, dtype, layout, device))
    return cases
