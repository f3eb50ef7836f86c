"""Typed stub of the compiled extension (ops/native/src/binding.cpp). Prefer the validated
wrappers in ``ops.native`` (kernels.py); these raise ValueError on bad input as well."""
from typing import Dict, List, Optional

import numpy as np

def cpu_features() -> Dict[str, bool]: ...
def supported_isas() -> List[str]: ...
def resolve_isa(isa: str) -> str: ...
def pack_activations(x: np.ndarray, offsets: np.ndarray, threshold_map: Optional[np.ndarray] = None,
                     threads: int = 1, isa: str = "auto") -> np.ndarray: ...
def pack_weights(weight: np.ndarray) -> np.ndarray: ...
def conv(x_bits: np.ndarray, w_bits: np.ndarray, in_ch: int, out_ch: int, out: np.ndarray, mode: str,
         part_scale: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None,
         spatial: Optional[np.ndarray] = None, post_scale: Optional[np.ndarray] = None,
         post_bias: Optional[np.ndarray] = None, act: str = "none", act_after_skip: bool = True,
         slope: Optional[np.ndarray] = None, act_shift: Optional[np.ndarray] = None,
         act_bias: Optional[np.ndarray] = None, residual: Optional[np.ndarray] = None,
         repeat: int = 1, out_threshold: Optional[np.ndarray] = None, threads: int = 1,
         isa: str = "auto", out_bits: Optional[np.ndarray] = None,
         bits_offsets: Optional[np.ndarray] = None, variant: int = -1,
         norm_scale: Optional[np.ndarray] = None, norm_bias: Optional[np.ndarray] = None,
         fma: bool = False) -> None: ...
def conv_variants(isa: str) -> List[str]: ...
def peak(isa: str, iters: int, threads: int = 1) -> float: ...
def naive_conv(x_padded: np.ndarray, w_naive: np.ndarray, out: np.ndarray, threads: int = 1,
               isa: str = "auto") -> None: ...
def change_layout(x: np.ndarray, out: np.ndarray, threads: int = 1) -> None: ...
def depth_to_space(x: np.ndarray, out: np.ndarray, r: int, threads: int = 1) -> None: ...
def image_skip(o: np.ndarray, x: np.ndarray, out: np.ndarray, s: int, mode: str,
               threads: int = 1) -> None: ...

class Layer:
    isa: str
    planes: int
    def __init__(self, w_bits: np.ndarray, in_ch: int, out_ch: int,
                 part_scale: Optional[np.ndarray] = None, bias: Optional[np.ndarray] = None,
                 post_scale: Optional[np.ndarray] = None, post_bias: Optional[np.ndarray] = None,
                 act: str = "none", act_after_skip: bool = True, slope: Optional[np.ndarray] = None,
                 act_shift: Optional[np.ndarray] = None, act_bias: Optional[np.ndarray] = None,
                 repeat: int = 1, parts: int = 1, bits_offsets: Optional[np.ndarray] = None,
                 isa: str = "auto", norm_scale: Optional[np.ndarray] = None,
                 norm_bias: Optional[np.ndarray] = None, fma: bool = False,
                 fold: bool = False) -> None: ...
    def run(self, x_bits: np.ndarray, out: np.ndarray, residual: Optional[np.ndarray] = None,
            spatial: Optional[np.ndarray] = None, post_scale: Optional[np.ndarray] = None,
            out_bits: Optional[np.ndarray] = None, threads: int = 1, variant: int = 0) -> None: ...
