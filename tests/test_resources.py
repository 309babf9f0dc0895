"""Every registered CUDA kernel compiles for sm_90 with no local memory, no f64 and no spills."""
import re
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


NAN_KEEPING = [k for k in KERNELS if k[0] in ("gemm.gemm_64x64_nn", "pointwise.relu", "pointwise.relu_backward",
                                             "rnn.rnn_relu_step_forward", "rnn.rnn_relu_persistent_forward")]


@pytest.mark.parametrize("label,kernel,signature", NAN_KEEPING, ids=[k[0] for k in NAN_KEEPING])
def test_relu_kernels_keep_nan(label, kernel, signature):
    """max.f32 returns the other operand for a NaN (and fastmath folds compare-and-select into it): the
    ReLUs (the op, the GEMM epilogue, the ReLU RNN cell) must select, so that a NaN stays visible."""
    assert len(NAN_KEEPING) == 5
    ptx = resources.compile_ptx(kernel, signature)
    assert not re.search(r"\bmax(\.ftz)?(\.nan)?\.f32", ptx), f"{label}: max.f32 turns a NaN into 0"
