"""``ShuffleNetV1``: Megvii's ShuffleNetV1 (ShuffleNet-Series) built from fused blocks.

Same modules, state_dict keys, initialisation and outputs as ShuffleNetV1/network.py of
megvii-model/ShuffleNet-Series, so its released weights load with ``strict=True``
(see :func:`shufflenet_fused.load_megvii_checkpoint` for their file format and the input
convention they expect).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..inference import pipeline
from ..ops import validation
from .batch_norm import run_layers
from .blocks import ShuffleV1Block

# stage_out_channels per (group, model_size), as in Megvii's network.py.
STAGE_OUT_CHANNELS: dict[int, dict[str, list[int]]] = {
    3: {
        "0.5x": [-1, 12, 120, 240, 480],
        "1.0x": [-1, 24, 240, 480, 960],
        "1.5x": [-1, 24, 360, 720, 1440],
        "2.0x": [-1, 48, 480, 960, 1920],
    },
    8: {
        "0.5x": [-1, 16, 192, 384, 768],
        "1.0x": [-1, 24, 384, 768, 1536],
        "1.5x": [-1, 24, 576, 1152, 2304],
        "2.0x": [-1, 48, 768, 1536, 3072],
    },
}
STAGE_REPEATS = [4, 8, 4]


class ShuffleNetV1(nn.Module):
    """ShuffleNetV1 (Zhang et al., 2017) as in megvii-model/ShuffleNet-Series.

    Args:
        input_size: accepted for compatibility with Megvii's constructor, which ignores it
            too: the global pooling is ``AvgPool2d(7)``, so the network expects 224x224
            inputs (a 7x7 last feature map).
        n_class: number of classes.
        model_size: ``"0.5x"``, ``"1.0x"``, ``"1.5x"`` or ``"2.0x"``.
        group: 3 or 8, the groups of the 1x1 convolutions.
        fused: build the blocks with the fused shuffle + depthwise conv + BN
            (:class:`~shufflenet_fused.ShuffleV1Block`).

    Raises:
        ValueError: for a ``group`` or ``model_size`` Megvii does not define.
    """

    def __init__(
        self,
        input_size: int = 224,
        n_class: int = 1000,
        model_size: str = "2.0x",
        group: int | None = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        if group not in STAGE_OUT_CHANNELS:
            raise ValueError(f"group must be one of {sorted(STAGE_OUT_CHANNELS)}, got {group!r}")
        if model_size not in STAGE_OUT_CHANNELS[group]:
            sizes = sorted(STAGE_OUT_CHANNELS[group])
            raise ValueError(f"model_size must be one of {sizes}, got {model_size!r}")
        self.stage_repeats = list(STAGE_REPEATS)
        self.model_size = model_size
        self.group = group
        self.stage_out_channels = list(STAGE_OUT_CHANNELS[group][model_size])

        # Modules are created in Megvii's order: the same RNG state gives the same weights.
        input_channel = self.stage_out_channels[1]
        self.first_conv = nn.Sequential(
            nn.Conv2d(3, input_channel, 3, 2, 1, bias=False),
            nn.BatchNorm2d(input_channel),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        features = []
        for stage, repeats in enumerate(self.stage_repeats):
            output_channel = self.stage_out_channels[stage + 2]
            for i in range(repeats):
                features.append(
                    ShuffleV1Block(
                        input_channel, output_channel, group=group, first_group=stage == 0 and i == 0,
                        mid_channels=output_channel // 4, ksize=3, stride=2 if i == 0 else 1, fused=fused,
                    )
                )  # fmt: skip
                input_channel = output_channel
        self.features = nn.Sequential(*features)
        self.globalpool = nn.AvgPool2d(7)
        self.classifier = nn.Sequential(nn.Linear(self.stage_out_channels[-1], n_class, bias=False))
        self._initialize_weights()

    def forward(self, x: Tensor) -> Tensor:
        # Eval mode without a gradient to compute: the whole network as one op
        # (shufflenet_fused/inference). Under validating() the modules run, and
        # each fused block checks its own inference op against the reference.
        if not validation.is_active():
            out = pipeline.try_network(self, x)
            if out is not None:
                return out
        # nn.SyncBatchNorm layers (convert_sync_batchnorm) synchronize through
        # shufflenet_fused, which also runs on CPU; otherwise this is first_conv(x).
        x = run_layers(self.first_conv, x)
        x = self.maxpool(x)
        x = self.features(x)
        x = self.globalpool(x)
        x = x.contiguous().view(-1, self.stage_out_channels[-1])
        return self.classifier(x)

    def _initialize_weights(self) -> None:
        # Megvii's initialisation, module by module in named_modules() order.
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01 if "first" in name else 1.0 / m.weight.shape[1])
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.constant_(m.weight, 1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0001)
                nn.init.constant_(m.running_mean, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
