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
         isa: str = "auto") -> None: ...
