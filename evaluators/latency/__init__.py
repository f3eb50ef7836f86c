"""The latency model: latency of a spec on the packed runtime (``ops.native``), predicted from a
table of per-unit figures measured on this machine.

A network is cut into timed units (the runtime's fixed call overhead, the FP head with the
input normalisation, every binary conv with the choices that change its work, the residual and
global-skip adds, the tail's stages, the output de-normalisation); each distinct unit is
measured once and stored under its canonical key; a spec's latency is predicted from the
figures of its units (their sum, calibrated by what whole networks cost beyond it).

Modules:

    keys         what each unit of a spec is (``decompose``), canonical key strings
    enumeration  every distinct unit a search space can produce (``space_keys``)
    probes       the smallest runnable piece of network doing a unit's work (``make_probe``)
    timing       statistics and timing protocols (``TimingStats``, ``time_rotation``)
    context      the measurement context (what a table is valid for) and the conditions of a
                 measurement (when, under what load)
    contention   signals of a busy machine and the rule that decides (``judge``)
    calibration  what whole networks cost beyond the sum of their units (``Calibration``)
    store        the JSON file, its session records, the cache path
    table        ``LatencyTable``: the predicting part
    measure      ``Measurer``: the measuring part (units, canary, networks, calibration)
"""
from evaluators.latency.contention import ContentionError
from evaluators.latency.measure import ROTATION_CHUNK, Measurer
from evaluators.latency.table import LatencyTable
from evaluators.latency.timing import TimingStats

__all__ = ["LatencyTable", "Measurer", "TimingStats", "ContentionError", "ROTATION_CHUNK"]
