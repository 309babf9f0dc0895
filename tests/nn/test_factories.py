"""nn's tensor factories (zeros ... eye, rand/randn/randint, from_numpy, the dtype aliases) against torch's: shapes,
dtypes, values of the deterministic ones, statistics and seeded repeatability of the random ones, memory sharing,
requires_grad and a backward through a factory-made leaf, errors."""
import numpy as np
import pytest

import nn
from tests.oracle import assert_close, random_array, torch_module

torch = torch_module()


def _numpy_dtype(torch_dtype):
    return torch.empty(0, dtype=torch_dtype).numpy().dtype


# Each case is called with `nn` and with `torch` as its module: the names (m.zeros, m.int64, ...) are the same.
DETERMINISTIC = {
    "zeros ints": lambda m: m.zeros(2, 3),
    "zeros tuple": lambda m: m.zeros((2, 3)),
    "zeros list": lambda m: m.zeros([4]),
    "zeros torch.Size": lambda m: m.zeros(torch.Size([2, 1, 3])),
    "zeros size=": lambda m: m.zeros(size=(3, 2)),
    "zeros scalar": lambda m: m.zeros(()),
    "zeros empty": lambda m: m.zeros(0, 3),
    "zeros int64": lambda m: m.zeros(2, dtype=m.int64),
    "ones": lambda m: m.ones(3, 1),
    "ones float64": lambda m: m.ones((2, 2), dtype=m.float64),
    "ones bool": lambda m: m.ones(3, dtype=m.bool),
    "ones int32": lambda m: m.ones(3, dtype=m.int32),
    "full float": lambda m: m.full((2, 3), 1.5),
    "full int": lambda m: m.full((2,), 7),
    "full bool": lambda m: m.full([3], True),
    "full int as float64": lambda m: m.full((2, 2), 3, dtype=m.float64),
    "full float as int64": lambda m: m.full((2,), 2.75, dtype=m.int64),
    "arange end": lambda m: m.arange(5),
    "arange start end": lambda m: m.arange(-3, 4),
    "arange int step": lambda m: m.arange(10, 0, -3),
    "arange float end": lambda m: m.arange(4.0),
    "arange float step": lambda m: m.arange(0, 1, 0.1),
    "arange 0.3 by 0.1": lambda m: m.arange(0, 0.3, 0.1),
    "arange half steps": lambda m: m.arange(1, 2.5, 0.5),
    "arange negative float step": lambda m: m.arange(1.0, -1.0, -0.3),
    "arange float64": lambda m: m.arange(0, 2, 0.25, dtype=m.float64),
    "arange ints as float32": lambda m: m.arange(0, 10, 3, dtype=m.float32),
    "arange empty": lambda m: m.arange(2, 2),
    "linspace": lambda m: m.linspace(0, 1, 5),
    "linspace odd": lambda m: m.linspace(-2.5, 7.25, 13),
    "linspace descending": lambda m: m.linspace(3, -1, 8, dtype=m.float64),
    "linspace one": lambda m: m.linspace(2, 9, 1),
    "linspace none": lambda m: m.linspace(0, 1, 0),
    "linspace int64": lambda m: m.linspace(0, 10, 5, dtype=m.int64),
    # an integer dtype: torch cuts float endpoints and steps toward zero first
    "arange floats as int64": lambda m: m.arange(-0.5, 3, dtype=m.int64),
    "arange float step as int64": lambda m: m.arange(0, 5, 1.5, dtype=m.int64),
    "arange float end as int64": lambda m: m.arange(0, 2.5, dtype=m.int64),
    "linspace floats as int64": lambda m: m.linspace(0.5, 9.5, 5, dtype=m.int64),
    "linspace descending floats as int64": lambda m: m.linspace(10.5, 0.5, 5, dtype=m.int64),
    "eye": lambda m: m.eye(3),
    "eye wide": lambda m: m.eye(2, 4),
    "eye tall": lambda m: m.eye(4, 3, dtype=m.float64),
    "eye bool": lambda m: m.eye(3, dtype=m.bool),
    "eye empty": lambda m: m.eye(0),
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_deterministic_factories_match_torch(name):
    ours, expected = DETERMINISTIC[name](nn), DETERMINISTIC[name](torch).numpy()
    assert isinstance(ours, nn.Tensor) and ours.device == "cpu" and ours.is_leaf and not ours.requires_grad
    assert ours.shape == expected.shape, f"{name}: shape {ours.shape}, torch {expected.shape}"
    assert ours.dtype == expected.dtype, f"{name}: dtype {ours.dtype}, torch {expected.dtype}"
    if name.startswith("linspace") and expected.dtype.kind == "f":   # torch's CPU kernel steps in float32
        assert_close(ours.data, expected, rtol=1e-6, atol=1e-7, name=name)
        np.testing.assert_array_equal(ours.data[[0, -1]] if expected.size else ours.data, expected[[0, -1]]
                                      if expected.size else expected, err_msg=f"{name}: endpoints")
    else:
        np.testing.assert_array_equal(ours.data, expected, err_msg=name)


def test_arange_length_is_torchs_ceil_of_the_span_over_the_step():
    for start, end, step in [(0, 1, 0.1), (0, 0.3, 0.1), (0, 0.6, 0.2), (1, 2, 1 / 3), (-1, 1, 0.7), (5, 0, -1.5),
                             (0, 1e-3, 1e-4), (0.1, 0.9, 0.2)]:
        ours = nn.arange(start, end, step)
        assert len(ours) == torch.arange(start, end, step).numel() == int(np.ceil((end - start) / step))
        np.testing.assert_array_equal(ours.data, torch.arange(start, end, step).numpy())


def test_empty_has_the_shape_and_dtype():
    for ours, expected in [(nn.empty(2, 3), torch.empty(2, 3)), (nn.empty((4,), dtype=nn.int64),
                                                                  torch.empty((4,), dtype=torch.int64)),
                           (nn.empty(size=(0, 2)), torch.empty(size=(0, 2)))]:
        assert ours.shape == tuple(expected.shape) and ours.dtype == _numpy_dtype(expected.dtype)


# ---- *_like --------------------------------------------------------------------------------------------
LIKE = {
    "zeros_like": lambda m, x, **kw: m.zeros_like(x, **kw),
    "ones_like": lambda m, x, **kw: m.ones_like(x, **kw),
    "full_like": lambda m, x, **kw: m.full_like(x, 2.5, **kw),
    "empty_like": lambda m, x, **kw: m.empty_like(x, **kw),
    "rand_like": lambda m, x, **kw: m.rand_like(x, **kw),
    "randn_like": lambda m, x, **kw: m.randn_like(x, **kw),
}


@pytest.mark.parametrize("name", sorted(LIKE))
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_like_factories_follow_the_input_unless_told(name, dtype):
    array = (random_array((3, 2, 5), seed=4) * 10).astype(dtype)
    make = LIKE[name]
    if name.startswith("rand") and dtype == "int64":   # torch: no uniform/normal draws in an integer dtype
        with pytest.raises(TypeError, match=f"^{name}: expected a floating dtype, got int64"):
            make(nn, nn.Tensor(array))
        return
    ours, expected = make(nn, nn.Tensor(array)), make(torch, torch.from_numpy(array))
    assert ours.shape == tuple(expected.shape) and ours.dtype == _numpy_dtype(expected.dtype) and ours.device == "cpu"
    if name in ("zeros_like", "ones_like", "full_like"):
        np.testing.assert_array_equal(ours.data, expected.numpy())
    override = make(nn, nn.Tensor(array), dtype=nn.float64)
    assert override.dtype == np.float64 == _numpy_dtype(make(torch, torch.from_numpy(array), dtype=torch.float64).dtype)


def test_full_like_keeps_the_input_dtype_not_the_fill_values():
    x = nn.zeros(3, dtype=nn.int64)
    assert nn.full_like(x, 2.9).dtype == np.int64 == _numpy_dtype(torch.full_like(torch.zeros(3, dtype=torch.int64),
                                                                                   2.9).dtype)
    np.testing.assert_array_equal(nn.full_like(x, 2.9).data, [2, 2, 2])


# ---- random draws --------------------------------------------------------------------------------------
DRAWS = 100_000


def test_rand_is_uniform_on_zero_one():
    for dtype in (nn.float32, nn.float64, nn.float16):
        x = nn.rand(DRAWS // 100, 100, dtype=dtype).data
        assert x.shape == (DRAWS // 100, 100) and x.dtype == dtype
        assert x.min() >= 0 and x.max() < 1, f"{np.dtype(dtype)}: outside [0, 1)"
        x = x.astype(np.float64)
        assert abs(x.mean() - 0.5) < 0.01 and abs(x.std() - np.sqrt(1 / 12)) < 0.01, np.dtype(dtype)


def test_randn_is_standard_normal():
    for dtype in (nn.float32, nn.float64):
        x = nn.randn(DRAWS, dtype=dtype).data
        assert x.dtype == dtype and x.shape == (DRAWS,)
        assert abs(x.mean()) < 0.02 and abs(x.std() - 1) < 0.02, np.dtype(dtype)
        assert abs(np.mean(np.abs(x) < 1) - 0.6827) < 0.01   # the bell's shape, not only its moments


def test_randint_covers_low_to_high_exclusive():
    x = nn.randint(3, 10, (DRAWS,))
    assert x.dtype == np.int64 == _numpy_dtype(torch.randint(3, 10, (2,)).dtype)
    assert set(np.unique(x.data)) == set(range(3, 10))
    assert abs(x.data.mean() - 6) < 0.05
    counts = np.bincount(x.data - 3)
    assert counts.min() > DRAWS / 7 * 0.9
    assert set(np.unique(nn.randint(4, (DRAWS,)).data)) == {0, 1, 2, 3}   # randint(high, size): low = 0


def test_randint_forms_and_dtypes_match_torch():
    forms = [lambda m: m.randint(5, (2, 3)), lambda m: m.randint(2, 5, (4,)), lambda m: m.randint(2, 5, size=(4,)),
             lambda m: m.randint(low=-4, high=-1, size=(3, 1)), lambda m: m.randint(high=3, size=[2]),
             lambda m: m.randint(0, 100, (5,), dtype=m.int32), lambda m: m.randint(0, 10, (3,), dtype=m.float32),
             lambda m: m.randint(0, 2, (3,), dtype=m.bool)]
    for form in forms:
        ours, expected = form(nn), form(torch)
        assert ours.shape == tuple(expected.shape) and ours.dtype == _numpy_dtype(expected.dtype)
    x = nn.randint(low=-4, high=-1, size=(1000,)).data
    assert x.min() >= -4 and x.max() <= -2


def test_random_draws_repeat_under_manual_seed_and_advance_otherwise():
    for draw in (lambda: nn.rand(4, 5), lambda: nn.randn(7, dtype=nn.float64), lambda: nn.randint(0, 1000, (9,)),
                 lambda: nn.rand_like(nn.zeros(3, 3)), lambda: nn.randn_like(nn.zeros(6))):
        nn.manual_seed(1234)
        first, second = draw().data, draw().data
        nn.manual_seed(1234)
        np.testing.assert_array_equal(draw().data, first)
        assert not np.array_equal(first, second)
        nn.manual_seed(4321)
        assert not np.array_equal(draw().data, first)


def test_float32_draws_are_made_in_float32_from_manual_seeds_generator():
    nn.manual_seed(77)
    uniform, normal = nn.rand(6), nn.randn(6)
    reference = np.random.default_rng(77)
    np.testing.assert_array_equal(uniform.data, reference.random(6, dtype=np.float32))
    np.testing.assert_array_equal(normal.data, reference.standard_normal(6, dtype=np.float32))
    assert nn.init.default_generator() is not None


def test_a_given_generator_is_used():
    a = nn.rand(5, generator=np.random.default_rng(3)).data
    np.testing.assert_array_equal(a, np.random.default_rng(3).random(5, dtype=np.float32))
    b = nn.randint(0, 50, (5,), generator=np.random.default_rng(3)).data
    np.testing.assert_array_equal(b, np.random.default_rng(3).integers(0, 50, (5,), dtype=np.int64))


# ---- from_numpy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "uint8", "bool"])
def test_from_numpy_shares_memory_both_ways(dtype):
    array = np.arange(12).reshape(3, 4).astype(dtype)
    ours, theirs = nn.from_numpy(array), torch.from_numpy(array.copy())
    assert ours.dtype == array.dtype == _numpy_dtype(theirs.dtype) and ours.shape == (3, 4)
    assert ours.device == "cpu" and not ours.requires_grad
    array[1, 2] = 1
    assert ours.data[1, 2] == 1
    ours.data[0, 0] = 1
    assert array[0, 0] == 1
    assert np.shares_memory(ours.data, array)


def test_from_numpy_in_place_ops_write_into_the_array():
    array = np.ones(4, np.float32)
    tensor = nn.from_numpy(array)
    tensor.mul_(3.0)
    np.testing.assert_array_equal(array, [3, 3, 3, 3])


# ---- requires_grad and autograd ------------------------------------------------------------------------
def test_factory_leaves_require_grad_and_backward_matches_torch():
    x = random_array((5, 3), np.float64, seed=11)
    nn.manual_seed(0)
    weight = nn.randn(3, 4, dtype=nn.float64, requires_grad=True)
    bias = nn.zeros(4, dtype=nn.float64, requires_grad=True)
    scale = nn.full((4,), 0.5, dtype=nn.float64, requires_grad=True)
    for leaf in (weight, bias, scale):
        assert leaf.requires_grad and leaf.is_leaf and leaf.grad is None
    ((nn.Tensor(x) @ weight + bias).tanh() * scale).sum().backward()

    leaves = [torch.tensor(t.numpy(), requires_grad=True) for t in (weight, bias, scale)]
    ((torch.from_numpy(x) @ leaves[0] + leaves[1]).tanh() * leaves[2]).sum().backward()
    for ours, theirs, name in zip((weight, bias, scale), leaves, ("weight", "bias", "scale")):
        assert_close(ours.grad.data, theirs.grad.numpy(), np.float64, name=name)


@pytest.mark.parametrize("make", [lambda: nn.ones(2, 2, requires_grad=True), lambda: nn.rand(3, requires_grad=True),
                                  lambda: nn.arange(0.0, 1.0, 0.5, requires_grad=True),
                                  lambda: nn.linspace(0, 1, 3, requires_grad=True),
                                  lambda: nn.eye(2, requires_grad=True),
                                  lambda: nn.randint(0, 5, (3,), dtype=nn.float32, requires_grad=True),
                                  lambda: nn.zeros_like(nn.zeros(3), requires_grad=True)])
def test_floating_factories_can_require_grad(make):
    leaf = make()
    assert leaf.requires_grad and leaf.is_leaf
    (leaf * 2).sum().backward()
    np.testing.assert_array_equal(leaf.grad.data, np.full(leaf.shape, 2, leaf.dtype))


# ---- dtype aliases -------------------------------------------------------------------------------------
def test_dtype_aliases_name_the_same_dtypes_as_torch():
    for name in ("bool", "uint8", "int8", "int16", "int32", "int64", "long", "float16", "half", "float32",
                 "float64", "double"):
        assert np.dtype(getattr(nn, name)) == _numpy_dtype(getattr(torch, name)), name
        assert nn.zeros(1, dtype=getattr(nn, name)).dtype == _numpy_dtype(getattr(torch, name)), name


# ---- errors --------------------------------------------------------------------------------------------
ERRORS = [
    (lambda: nn.zeros(-1, 2), ValueError, "zeros: sizes must be non-negative, got (-1, 2)"),
    (lambda: nn.ones((2, -3)), ValueError, "ones: sizes must be non-negative, got (2, -3)"),
    (lambda: nn.empty(2.0), TypeError, "empty: size must be a tuple of ints, got (2.0,)"),
    (lambda: nn.zeros(), TypeError, "zeros: missing the size"),
    (lambda: nn.zeros(2, size=(2,)), TypeError, "zeros: give the size either"),
    (lambda: nn.full(3, 1.0), TypeError, "full: size must be a tuple of ints, got 3"),
    (lambda: nn.full((2,), "a"), TypeError, "full: fill_value must be a bool, int or float, got 'a'"),
    (lambda: nn.zeros(2, dtype="no such dtype"), TypeError, "zeros: expected a dtype"),
    (lambda: nn.ones(2, dtype=np.complex64), TypeError, "ones: expected a bool, integer or floating dtype, got c"),
    (lambda: nn.zeros(2, device="tpu"), ValueError, "zeros: device must be 'cpu' or 'cuda', got 'tpu'"),
    (lambda: nn.zeros(2, dtype=nn.int64, requires_grad=True), RuntimeError,
     "zeros: only Tensors of floating point dtype can require gradients, got int64"),
    (lambda: nn.full((2,), 3, requires_grad=True), RuntimeError, "full: only Tensors of floating point dtype"),
    (lambda: nn.arange(5, requires_grad=True), RuntimeError, "arange: only Tensors of floating point dtype"),
    (lambda: nn.randint(0, 3, (2,), requires_grad=True), RuntimeError, "randint: only Tensors of floating point"),
    (lambda: nn.ones_like(nn.zeros(2, dtype=nn.int32), requires_grad=True), RuntimeError,
     "ones_like: only Tensors of floating point dtype"),
    (lambda: nn.zeros_like(nn.zeros(2), dtype="no such dtype"), TypeError, "zeros_like: expected a dtype"),
    (lambda: nn.full_like(nn.zeros(2), 1.0, dtype=np.longdouble), TypeError,
     "full_like: expected a bool, integer or floating dtype, got float128"),
    (lambda: nn.full((2,), float("nan"), dtype=nn.int64), ValueError,
     "full: value nan cannot be converted to int64 without overflow"),
    (lambda: nn.full((2,), 70000, dtype=nn.float16), ValueError,
     "full: value 70000 cannot be converted to float16 without overflow"),
    (lambda: nn.full((2,), -1, dtype=nn.uint8), ValueError, "full: value -1 cannot be converted to uint8"),
    (lambda: nn.randint(0, 100000, (3,), dtype=nn.float16), ValueError, "randint: [0, 100000) is out of bounds"),
    (lambda: nn.arange(0, 1, 0.3, dtype=nn.int64), ValueError, "arange: step must be nonzero"),
    (lambda: nn.from_numpy(np.ones(2, ">f4")), ValueError, "from_numpy: the array's byte order is not this machine's"),
    (lambda: nn.rand(2, dtype=nn.int64), TypeError, "rand: expected a floating dtype, got int64"),
    (lambda: nn.randn(2, dtype=nn.bool), TypeError, "randn: expected a floating dtype, got bool"),
    (lambda: nn.rand(2, generator=42), TypeError, "rand: generator must be a numpy.random.Generator, got int"),
    (lambda: nn.zeros_like(np.zeros(2)), TypeError, "zeros_like: input must be a Tensor, got ndarray"),
    (lambda: nn.arange(0, 1, 0), ValueError, "arange: step must be nonzero, got 0"),
    (lambda: nn.arange(0, 1, -0.1), ValueError, "arange: upper bound and lower bound inconsistent with step sign"),
    (lambda: nn.arange(1, 0), ValueError, "arange: upper bound and lower bound inconsistent with step sign"),
    (lambda: nn.arange(0, float("inf")), ValueError, "arange: end must be finite, got inf"),
    (lambda: nn.arange("3"), TypeError, "arange: end must be an int or a float, got '3'"),
    (lambda: nn.linspace(0, 1, -1), ValueError, "linspace: number of steps must be non-negative, got -1"),
    (lambda: nn.linspace(0, 1, 2.0), TypeError, "linspace: steps must be an int, got 2.0"),
    (lambda: nn.eye(-1), ValueError, "eye: n must be greater or equal to 0, got -1"),
    (lambda: nn.eye(2, -3), ValueError, "eye: m must be greater or equal to 0, got -3"),
    (lambda: nn.eye(2.5), TypeError, "eye: n must be an int, got 2.5"),
    (lambda: nn.randint(5, 5, (2,)), ValueError, "randint: expected low < high, got low=5 >= high=5"),
    (lambda: nn.randint(3, 1, (2,)), ValueError, "randint: expected low < high, got low=3 >= high=1"),
    (lambda: nn.randint(5, 3), TypeError, "randint: size must be a tuple of ints, got 3"),
    (lambda: nn.randint((3,)), TypeError, "randint: missing the high argument"),
    (lambda: nn.randint(0.5, 3, (2,)), TypeError, "randint: low and high must be ints"),
    (lambda: nn.randint(0, 2 ** 40, (2,), dtype=nn.int32), ValueError,
     "randint: [0, 1099511627776) is out of bounds for int32"),
    (lambda: nn.from_numpy([1, 2]), TypeError, "from_numpy: expected np.ndarray, got list"),
    (lambda: nn.from_numpy(np.array(["a"], object)), TypeError, "from_numpy: can't convert np.ndarray of dtype o"),
]


@pytest.mark.parametrize("index", range(len(ERRORS)))
def test_errors_name_the_function_and_say_expected_and_given(index):
    make, error, message = ERRORS[index]
    with pytest.raises(error) as raised:
        make()
    assert str(raised.value).startswith(message), str(raised.value)


def test_torch_refuses_the_same_inputs():
    """The refusals above are torch's (its exception types differ: RuntimeError where we raise ValueError)."""
    for make in (lambda: torch.zeros(-1, 2), lambda: torch.arange(0, 1, 0), lambda: torch.arange(0, 1, -0.1),
                 lambda: torch.linspace(0, 1, -1), lambda: torch.eye(-1), lambda: torch.randint(5, 5, (2,)),
                 lambda: torch.zeros(2, dtype=torch.int64, requires_grad=True), lambda: torch.full(3, 1.0),
                 lambda: torch.randint(5, 3), lambda: torch.from_numpy([1, 2]),
                 lambda: torch.randint(0, 2 ** 40, (2,), dtype=torch.int32)):
        with pytest.raises((RuntimeError, TypeError, ValueError)):
            make()
    with pytest.raises(NotImplementedError):
        torch.rand(2, dtype=torch.int64)


def test_cuda_without_a_gpu_says_so():
    if nn.init.backend.gpu_available():
        pytest.skip("a GPU is present (tests/gpu/test_factories_gpu.py covers device='cuda')")
    with pytest.raises(RuntimeError, match="^zeros: device 'cuda' requested but no usable GPU"):
        nn.zeros(2, device="cuda")


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")   # (np.matrix itself warns)
def test_from_numpy_of_an_ndarray_subclass_is_a_plain_view():
    """np.matrix (whose * is a matrix product) becomes a plain ndarray view of the same memory: elementwise
    arithmetic as torch's."""
    matrix = np.matrix([[1.0, 2.0], [3.0, 4.0]])
    tensor = nn.from_numpy(matrix)
    assert type(tensor.data) is np.ndarray and np.shares_memory(tensor.data, matrix)
    np.testing.assert_array_equal((tensor * tensor).numpy(), [[1.0, 4.0], [9.0, 16.0]])
