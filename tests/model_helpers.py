"""Helpers shared by tests of several packages (import as ``tests.model_helpers``)."""
import torch
import torch.nn as nn


def perturb(model: nn.Module, seed: int = 0, weight_std: float = 0.2, bn: str = "randn") -> nn.Module:
    """Move every parameter and BN statistic away from its init (seeded), so nothing is
    trivially 1 or 0; returns the model in eval mode.

    ``weight_std``: every parameter gets ``weight_std * N(0, 1)`` added. ``bn``: how BN
    running statistics are set, ``"randn"`` (mean 0.5 N(0, 1), var 0.5 + U(0, 1)) or
    ``"normal"`` (mean N(0, 0.3), var U(0.5, 1.5))."""
    if bn not in ("randn", "normal"):
        raise ValueError(f"bn: invalid value {bn!r}; allowed: 'randn', 'normal'")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(weight_std * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                if bn == "randn":
                    m.running_mean.copy_(0.5 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
                else:
                    m.running_mean.normal_(0, 0.3, generator=g)
                    m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()
