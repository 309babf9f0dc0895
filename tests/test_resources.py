"""Every registered CUDA kernel compiles for sm_90 with no local memory, no f64 and no spills."""
import shutil

import pytest

from kernels.cuda import resources

KERNELS = resources.registered_kernels()


def test_kernels_are_registered():
    assert len(KERNELS) >= 2


@pytest.mark.parametrize("label,kernel,signature", KERNELS, ids=[k[0] for k in KERNELS])
def test_kernel_resources(label, kernel, signature):
    report = resources.check_kernel(label, kernel, signature)
    assert not report["local_memory"], f"{label}: PTX uses local memory (spills or stack arrays)"
    assert not report["f64"], f"{label}: fp32 kernel contains f64 instructions"
    if shutil.which("ptxas"):
        assert report["spill_bytes"] == 0, f"{label}: ptxas reports {report['spill_bytes']} spill bytes"
        assert report["registers"] <= 255
