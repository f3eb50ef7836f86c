"""Binary operators for super-resolution networks (training-time PyTorch modules).

``ops`` imports nothing else of the project. See ``ops.choices`` for the per-layer choices,
``ops.conv.BinaryConv2d`` for how they compose, ``ops.plan`` for the frozen inference contract.
"""
from ops.choices import CHOICES, defaults, resolve, validate_choice
from ops.quantizers import set_progress, sign
from ops.conv import BinaryConv2d
from ops.bam import BamHistory
from ops.blocks import BinaryBlock, BinaryUpsampler
from ops.plan import ConvPlan, run_plan

__all__ = [
    "CHOICES",
    "defaults",
    "resolve",
    "validate_choice",
    "set_progress",
    "sign",
    "BinaryConv2d",
    "BamHistory",
    "BinaryBlock",
    "BinaryUpsampler",
    "ConvPlan",
    "run_plan",
]
