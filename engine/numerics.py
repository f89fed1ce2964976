"""CPU numerics that do not depend on the machine, for the default profile.

Float32 training and inference on CPU give different bits on different machines: MKL's GEMMs and
ATen's vectorised kernels take an AVX-512 or an AVX2 code path depending on the processor, and ATen
splits its reductions by thread count, so the miniature teacher trained on an AMD EPYC (AVX2, many
cores) differed from the one trained here (AVX-512, 2 cores), and with it every table after it.
Measured on this machine (benchmarks of 15 training steps): forcing AVX2 alone, or 1 thread instead of
2, each changed the trained weights' bytes.

`pin()` fixes all three before torch is loaded: ATen's kernels at AVX2 (`ATEN_CPU_CAPABILITY`), MKL's
code path at AVX2 with conditional numerical reproducibility (`MKL_CBWR`, and `MKL_ENABLE_INSTRUCTIONS`
so a user's setting cannot lift it), oneDNN at AVX2, and 2 intra-op threads. AVX2 is what every x86-64
server of the last decade has (Intel since Haswell, AMD since Zen); a processor without it runs other
code paths and its results can differ. The `dasd` command calls it for the default profile only
(miniature.enabled): the paper profile runs on GPUs, where these switches mean nothing.
`DASD_NUMERICS=native` leaves the machine's own code paths and thread count (faster on a big machine;
the results then depend on it).
"""
from __future__ import annotations

import os
import sys

# MKL's and OpenMP's documented conditions for the same bits from run to run on one machine: a thread
# count that the runtime may not change on its own (MKL_DYNAMIC is on by default, and torch turns it off
# only when a program calls set_num_threads). For the runs that are not pinned: the pinned profile keeps
# the code paths its committed results were made with (MKL_DYNAMIC=FALSE alone changes the trained bits).
STEADY = {"MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    # intra-op threads: ATen's reductions are split by thread count, so the count is part of the result
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}


def pin() -> bool:
    """Set the pinned environment for this process and its children; False (and nothing set) when torch is
    already loaded, since its kernels were chosen then (a test calling the CLI in-process, say)."""
    if "torch" in sys.modules or os.environ.get("DASD_NUMERICS") == "native":
        return False
    os.environ.update(PINNED)
    return True


def steady() -> None:
    """The run-to-run conditions alone, for a run that is not pinned (a user's own setting wins); like
    pin(), it must run before torch is loaded to reach MKL."""
    for key, value in STEADY.items():
        os.environ.setdefault(key, value)


def pin_for(params: dict) -> bool:
    """Pin when the params are the default profile's (the miniature builds its own models on CPU)."""
    mini = params.get("miniature")
    return pin() if isinstance(mini, dict) and mini.get("enabled") else False
