"""The whole-network inference path of the fused models (CPU, float32).

In eval mode, with no gradient to compute, :class:`~shufflenet_fused.ShuffleNetV1` and
:class:`~shufflenet_fused.ShuffleV1Block` run ``torch.ops.shufflenet_fused.shufflenet_v1_infer``
(one op for the whole network: BatchNorms folded per call, the channel shuffle folded into the
first 1x1 convolution's stores) instead of their modules; :func:`inference_pipeline` switches
it off. docs/inference.md describes it.
"""

from .arguments import Unsupported, network_arguments, single_block_arguments
from .pipeline import inference_pipeline, is_enabled

__all__ = ["Unsupported", "network_arguments", "single_block_arguments", "inference_pipeline", "is_enabled"]
