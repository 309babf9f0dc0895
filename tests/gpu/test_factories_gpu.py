"""nn's tensor factories with device='cuda': CuPy arrays of the right dtype and shape, the deterministic ones equal
to the CPU's (checked against torch in tests/nn/test_factories.py), draws made on the GPU from CuPy's generator
(seeded by nn.manual_seed) with the right statistics, *_like following a GPU input, a backward through a
GPU leaf. Needs a GPU (skipped elsewhere)."""
import numpy as np
import pytest

import nn

DRAWS = 1_000_000

DETERMINISTIC = {
    "zeros": lambda **kw: nn.zeros(3, 4, **kw),
    "zeros int64": lambda **kw: nn.zeros((2, 5), dtype=nn.int64, **kw),
    "ones": lambda **kw: nn.ones(size=(4,), **kw),
    "ones bool": lambda **kw: nn.ones(3, dtype=nn.bool, **kw),
    "full float": lambda **kw: nn.full((2, 3), 1.5, **kw),
    "full int": lambda **kw: nn.full([4], 7, **kw),
    "arange ints": lambda **kw: nn.arange(-3, 10, 2, **kw),
    "arange floats": lambda **kw: nn.arange(0, 1, 0.1, **kw),
    "arange float64": lambda **kw: nn.arange(1.0, -1.0, -0.3, dtype=nn.float64, **kw),
    "linspace": lambda **kw: nn.linspace(-2.5, 7.25, 13, **kw),
    "linspace int64": lambda **kw: nn.linspace(0, 10, 5, dtype=nn.int64, **kw),
    "eye": lambda **kw: nn.eye(3, 5, **kw),
    "eye float64": lambda **kw: nn.eye(4, dtype=nn.float64, **kw),
}


def _is_cupy(array):
    import cupy
    return isinstance(array, cupy.ndarray)


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_factories_on_gpu_match_cpu(name):
    ours, expected = DETERMINISTIC[name](device="cuda"), DETERMINISTIC[name]()
    assert _is_cupy(ours.data) and ours.device == "cuda", name
    assert ours.dtype == expected.dtype and ours.shape == expected.shape, name
    if expected.dtype.kind == "f":   # same float64 formulas on both devices; allow the last float32 bit
        np.testing.assert_allclose(ours.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7, err_msg=name)
    else:
        np.testing.assert_array_equal(ours.numpy(), expected.numpy(), err_msg=name)


def test_empty_on_gpu_is_a_cupy_array_of_the_dtype():
    for tensor, dtype in ((nn.empty(2, 3, device="cuda"), np.float32),
                          (nn.empty((4,), dtype=nn.int32, device="cuda"), np.int32)):
        assert _is_cupy(tensor.data) and tensor.dtype == dtype


@pytest.mark.parametrize("dtype", [nn.float32, nn.float64])
def test_rand_on_gpu_is_uniform_on_zero_one(dtype):
    x = nn.rand(DRAWS // 1000, 1000, dtype=dtype, device="cuda")
    assert _is_cupy(x.data) and x.dtype == dtype and x.shape == (DRAWS // 1000, 1000)
    values = x.numpy().astype(np.float64)
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean() - 0.5) < 0.005 and abs(values.std() - np.sqrt(1 / 12)) < 0.005


def test_rand_float16_on_gpu_stays_below_one():
    x = nn.rand(DRAWS, dtype=nn.float16, device="cuda")
    assert _is_cupy(x.data) and x.dtype == np.float16
    values = x.numpy()
    assert values.min() >= 0 and values.max() < 1


@pytest.mark.parametrize("dtype", [nn.float32, nn.float64])
def test_randn_on_gpu_is_standard_normal(dtype):
    x = nn.randn(DRAWS, dtype=dtype, device="cuda")
    assert _is_cupy(x.data) and x.dtype == dtype
    values = x.numpy().astype(np.float64)
    assert abs(values.mean()) < 0.01 and abs(values.std() - 1) < 0.01
    assert abs(np.mean(np.abs(values) < 1) - 0.6827) < 0.005


def test_randint_on_gpu_covers_low_to_high_exclusive():
    x = nn.randint(-3, 4, (DRAWS,), device="cuda")
    assert _is_cupy(x.data) and x.dtype == np.int64
    values = x.numpy()
    assert set(np.unique(values)) == set(range(-3, 4))
    assert np.bincount(values + 3).min() > DRAWS / 7 * 0.95
    y = nn.randint(10, (5, 2), dtype=nn.int32, device="cuda")
    assert _is_cupy(y.data) and y.dtype == np.int32 and y.shape == (5, 2)


def test_gpu_draws_repeat_under_manual_seed_and_come_from_cupys_generator():
    import cupy
    for draw in (lambda: nn.rand(5, 3, device="cuda"), lambda: nn.randn(7, device="cuda"),
                 lambda: nn.randint(0, 1000, (9,), device="cuda"),
                 lambda: nn.rand_like(nn.zeros(4, device="cuda"))):
        nn.manual_seed(1234)
        first, second = draw().numpy(), draw().numpy()
        nn.manual_seed(1234)
        np.testing.assert_array_equal(draw().numpy(), first)
        assert not np.array_equal(first, second)
    nn.manual_seed(77)
    ours = nn.rand(6, device="cuda").numpy()
    cupy.random.seed(77)
    np.testing.assert_array_equal(ours, cupy.random.random_sample(6, np.float32).get())


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "empty_like", "rand_like", "randn_like", "full_like"])
def test_like_factories_follow_a_gpu_input(name):
    source = nn.ones(3, 4, dtype=nn.float64, device="cuda")
    make = getattr(nn, name)
    extra = (2.5,) if name == "full_like" else ()
    out = make(source, *extra)
    assert _is_cupy(out.data) and out.dtype == np.float64 and out.shape == (3, 4)
    on_cpu = make(source, *extra, device="cpu", dtype=nn.float32)
    assert isinstance(on_cpu.data, np.ndarray) and on_cpu.dtype == np.float32
    to_gpu = make(nn.ones(2), *extra, device="cuda")
    assert _is_cupy(to_gpu.data) and to_gpu.dtype == np.float32


def test_backward_through_a_gpu_factory_leaf():
    nn.manual_seed(5)
    weight = nn.randn(3, 4, device="cuda", requires_grad=True)
    scale = nn.full((4,), 0.5, device="cuda", requires_grad=True)
    assert weight.is_leaf and weight.requires_grad and _is_cupy(weight.data)
    (weight * weight * scale).sum().backward()
    assert _is_cupy(weight.grad.data) and _is_cupy(scale.grad.data)
    w = weight.numpy()
    np.testing.assert_allclose(weight.grad.numpy(), w * 1.0, rtol=1e-6)   # 2 * w * 0.5
    np.testing.assert_allclose(scale.grad.numpy(), (w * w).sum(axis=0), rtol=1e-5)


def test_integer_gpu_tensors_cannot_require_grad():
    with pytest.raises(RuntimeError, match="^randint: only Tensors of floating point dtype"):
        nn.randint(0, 5, (3,), device="cuda", requires_grad=True)


def test_a_cpu_generator_is_refused_on_the_gpu():
    with pytest.raises(ValueError, match="^rand: generator= is for CPU draws"):
        nn.rand(3, device="cuda", generator=np.random.default_rng(0))
