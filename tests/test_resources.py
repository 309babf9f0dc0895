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
    assert not report["calls"], f"{label}: calls {report['calls']}: a device function was not inlined"
    if shutil.which("ptxas"):
        assert report["spill_bytes"] == 0, f"{label}: ptxas reports {report['spill_bytes']} spill bytes"
        assert report["registers"] <= 255


GEMMS = [k for k in KERNELS if k[0].startswith("gemm.")]
# (the loops of signed 64-bit index arithmetic a load, before: 0.50-0.54 and 0.36-0.38)
FMA_SHARE = {"128x128": 0.65, "64x64": 0.55}


@pytest.mark.parametrize("label,kernel,signature", GEMMS, ids=[k[0] for k in GEMMS])
def test_gemm_main_loop_is_mostly_fmas(label, kernel, signature):
    """The GEMM's K loop issues one instruction a cycle a warp scheduler at best: every instruction that is not an
    FFMA (address arithmetic, bounds tests, wrap-around fix-ups of signed indices) is an FMA lost. With the flat
    operands and unsigned offsets (gemm.py) the whole loop, its partial-K-tile branch included, is mostly FFMAs."""
    assert len(GEMMS) == 8
    machine_code = resources.sass(resources.compile_ptx(kernel, signature))
    if machine_code is None:
        pytest.skip("needs ptxas and nvdisasm (the nvidia-cuda-nvdisasm wheel, a test dependency)")
    loop = resources.fma_loop_share(machine_code)
    assert loop is not None, f"{label}: no loop of FFMAs found in the machine code (a new branch form?)"
    fmas, instructions = loop
    config = label.split("_")[1]
    assert fmas == 512, f"{label}: the K loop should hold one tile's 8 x 64 FFMAs, found {fmas}"
    assert fmas / instructions >= FMA_SHARE[config], f"{label}: {fmas} FFMAs in a loop of {instructions}"


MULTIPLY_KERNELS = [k for k in KERNELS if k[0].startswith(("gemm.gemm_", "conv.forward_", "conv.backward_data_",
                                                            "conv.backward_weight_", "conv.winograd_"))]


@pytest.mark.parametrize("label,kernel,signature", MULTIPLY_KERNELS, ids=[k[0] for k in MULTIPLY_KERNELS])
def test_multiply_loops_call_nothing(label, kernel, signature):
    """No loop of FFMAs in the GEMM and convolution kernels calls a subroutine: Numba's floor division of int64
    values branches to a 64-bit division one (device.divmod32 divides in 32 bits where indices allow)."""
    machine_code = resources.sass(resources.compile_ptx(kernel, signature))
    if machine_code is None:
        pytest.skip("needs ptxas and nvdisasm (the nvidia-cuda-nvdisasm wheel, a test dependency)")
    assert all(calls == 0 for _, _, calls in resources.fma_loops(machine_code)), f"{label}: a loop calls"


CONV_FMA_SHARE = {"conv.forward_128x128": 0.55, "conv.backward_data_128x128": 0.5}   # (before: 0.51, 0.42)


@pytest.mark.parametrize("label", sorted(CONV_FMA_SHARE))
def test_implicit_gemm_loops_are_mostly_fmas(label):
    kernel, signature = [(k, s) for name, k, s in KERNELS if name == label][0]
    machine_code = resources.sass(resources.compile_ptx(kernel, signature))
    if machine_code is None:
        pytest.skip("needs ptxas and nvdisasm (the nvidia-cuda-nvdisasm wheel, a test dependency)")
    fmas, instructions = resources.fma_loop_share(machine_code)
    assert fmas == 512 and fmas / instructions >= CONV_FMA_SHARE[label], f"{label}: {fmas} / {instructions}"


def test_fma_loop_share_reads_the_loop_with_most_ffmas():
    machine_code = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
        /*0010*/                   FFMA R2, R3, R4, R2 ;
        /*0020*/                   IADD3 R5, R5, 0x1, RZ ;
        /*0030*/              @!P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0040*/                   FFMA.FTZ R2, R3, R4, R2 ;
        /*0050*/                   FFMA.FTZ R6, R3, R4, R6 ;
        /*0060*/                   LDS.128 R8, [R9] ;
        /*0070*/                   @P1 BRA `(.L_x_2) ;
        /*0080*/                   FFMA.FTZ R7, R3, R4, R7 ;
.L_x_2:
        /*0090*/                   BRA `(.L_x_1) ;
        /*00a0*/                   EXIT ;
"""
    assert resources.fma_loop_share(machine_code) == (3, 6)
    assert resources.fma_loops(machine_code) == [(1, 3, 0), (3, 6, 0)]
    assert resources.fma_loop_share("        /*0000*/                   EXIT ;") is None


NAN_KEEPING = [k for k in KERNELS if k[0] in ("gemm.gemm_64x64_nn", "pointwise.relu", "pointwise.relu_backward",
                                             "rnn.rnn_relu_step_forward", "rnn.rnn_relu_persistent_forward",
                                             "norm.normalise")]


@pytest.mark.parametrize("label,kernel,signature", NAN_KEEPING, ids=[k[0] for k in NAN_KEEPING])
def test_relu_kernels_keep_nan(label, kernel, signature):
    """max.f32 returns the other operand for a NaN (and fastmath folds compare-and-select into it): the
    ReLUs (the op, the GEMM epilogue, the ReLU RNN cell, batch norm's fused one) must select, so that a NaN
    stays visible."""
    assert len(NAN_KEEPING) == 6
    ptx = resources.compile_ptx(kernel, signature)
    assert not re.search(r"\bmax(\.ftz)?(\.nan)?\.f32", ptx), f"{label}: max.f32 turns a NaN into 0"


def test_relu_masks_run_without_fastmath():
    """Batch norm's backward kernels mask the gradient of a fused ReLU (a NaN passes it on, as in torch): without
    fastmath, whose no-NaN assumption may fold the compare either way, and the ReLU kernels the same."""
    masking = [k for k in KERNELS if k[0] in ("norm.normalise", "norm.backward_sums", "norm.backward_input",
                                              "pointwise.relu", "pointwise.relu_backward")]
    assert len(masking) == 5
    for label, kernel, _ in masking:
        assert not kernel.targetoptions.get("fastmath"), f"{label} is compiled with fastmath"


def test_calls_are_found_in_ptx():
    """The check behind 'a device function was not inlined': calls with and without a return value, and
    the grid barrier's runtime calls in a persistent kernel (the only calls allowed)."""
    ptx = ("call.uni (retval0), \n_ZN6cudapy5numba6helperEf, \n(\nparam0\n);\n"
           "call.uni \ncudaCGSynchronize, \n(\nparam0, \nparam1\n);\nadd.s32 %r1, %r2, 1;")
    assert resources.ptx_calls(ptx) == {"_ZN6cudapy5numba6helperEf", "cudaCGSynchronize"}
    runtime_barrier = [k for k in KERNELS if k[0] == "rnn.lstm_persistent_forward_runtime_barrier"]
    assert runtime_barrier
    ptx = resources.compile_ptx(*runtime_barrier[0][1:])
    assert resources.ptx_calls(ptx.split(".entry", 1)[-1]) == resources.COOPERATIVE_RUNTIME


@pytest.mark.parametrize("label", ["rnn.lstm_persistent_forward", "rnn.gru_persistent_forward",
                                   "rnn.lstm_step_forward", "rnn.gru_step_forward"])
def test_recurrent_sigmoid_divides_approximately(label):
    """The gates' sigmoid divides by div.approx on a GPU (kernels/cuda/rnn_kernels.py): the IEEE division's
    slow-path call sites took registers that the persistent kernels do not have. tests/gpu/test_rnn_gpu.py
    holds the result to the float64 sigmoid."""
    kernel = [k for k in KERNELS if k[0] == label]
    body = resources.compile_ptx(*kernel[0][1:]).split(".entry", 1)[-1]
    assert "div.approx.f32" in body
    assert "rcp.rn.f32" not in body and "div.rn.f32" not in body


@pytest.mark.parametrize("kind", ["forward", "backward"])
def test_atomic_grid_barrier_makes_one_runtime_call_a_launch(kind):
    """The default persistent kernels meet at the atomic barrier: no cudaCGSynchronize, only the one handle
    call that marks them cooperative (outside the step loop), and thread 0's arrival as a fenced atomic add
    followed by a polling loop of relaxed loads (not atomics: they would queue in L2 ahead of the arrivals)."""
    atomic = [k for k in KERNELS if k[0] == f"rnn.lstm_persistent_{kind}"]
    body = resources.compile_ptx(*atomic[0][1:]).split(".entry", 1)[-1]
    assert resources.ptx_calls(body) == {"cudaCGGetIntrinsicHandle"}
    assert body.count("cudaCGGetIntrinsicHandle") == 1
    assert body.index("cudaCGGetIntrinsicHandle") < body.index("bar.sync")   # at entry, before any step
    arrival = re.search(r"membar\.gl;(?:(?!bar\.sync)[\s\S])*?atom\.global\.add\.u32[^\n]*\n"
                        r"(?:(?!bar\.sync)[\s\S])*?(\$L__BB\d+_\d+):\s*// begin inline asm\s*"
                        r"ld\.relaxed\.gpu\.u32 [^\n]*\n(?:(?!bar\.sync)[\s\S])*?bra\s+\1;"
                        r"(?:(?!bar\.sync)[\s\S])*?membar\.gl;", body)
    assert arrival, "no fenced arrival and polling loop (relaxed loads) between two block barriers"
    assert body.count("atom.global.add.u32") == 1, "the polling loop reads the word with atomics"
