"""Shared helpers of the native-kernel tests: every ISA path this CPU can run."""
import pytest

import ops.native as native
from ops.native import kernels

ALL_ISAS = list(native.ISAS)


def runnable_isas():
    if kernels._ext is None:
        return []
    return list(kernels._ext.supported_isas())


def isa_params():
    """One pytest param per ISA; the ones this CPU cannot execute are skipped with the reason."""
    ok = runnable_isas()
    out = []
    for isa in ALL_ISAS:
        marks = []
        if kernels._ext is None:
            marks = [pytest.mark.skip(reason="C++ extension not built")]
        elif isa not in ok:
            marks = [pytest.mark.skip(reason=f"CPU lacks the {isa} instructions "
                                             f"(runnable here: {', '.join(ok)})")]
        out.append(pytest.param(isa, marks=marks, id=isa))
    return out
