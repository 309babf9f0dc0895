"""Tensor's everyday torch methods (nn/tensor_methods.py, the maths of nn/tensor_maths.py, nn/tensor_shape.py)
against PyTorch: values and gradients in float64 and float32, result dtypes, float64 finite differences where the
gradient is not trivial (cumsum, prod with zeros, amax ties, gather/index_select repeats, sort/topk), in-place
rules and errors naming the method."""
import numpy as np
import pytest

import nn
from tests.nn.test_tensor_api import _check_finite_differences
from tests.oracle import assert_close, random_array, torch_module, torch_reference


def _torch_dtype(torch, dtype):
    return getattr(torch, np.dtype(dtype).name if np.dtype(dtype) != np.bool_ else "bool")


def _against_torch(fn, arrays, dtype, torch_fn=None):
    """fn on our leaves of `dtype` and (torch_fn or fn) on torch's float64 ones: the output (values, dtype) and
    the gradients of sum(out * g) for a random g."""
    arrays = [a.astype(dtype) for a in arrays]
    ours = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ours)
    assert out.dtype == dtype and out.requires_grad
    g = random_array(out.shape, np.float64, seed=99)
    expected, grads = torch_reference(torch_fn or fn, *arrays, grad_output=g)
    assert_close(out.data, expected, dtype, name="forward")
    out.backward(g.astype(dtype))
    for index, (tensor, grad) in enumerate(zip(ours, grads)):
        assert tensor.grad.dtype == dtype
        assert_close(tensor.grad.data, grad, dtype, name=f"gradient {index}")


A = random_array((3, 4), np.float64, seed=1)
B = random_array((3, 4), np.float64, seed=2)
ROW = random_array((4,), np.float64, seed=3)
POSITIVE = random_array((3, 4), np.float64, seed=4, low=0.2, high=2.0)
TIES = np.array([[0.5, 0.5, -0.25, 0.75], [0.1, -0.3, -0.3, 0.1], [0.2, 0.9, 0.4, 0.9]])
MASK = np.array([[True, False, False, True], [False, True, False, False], [True, True, False, False]])
ZEROS = np.array([[0.5, 0.0, -1.5, 2.0], [0.0, 1.25, 0.0, -0.5], [0.75, -2.0, 1.5, 0.5]])
torch = torch_module()

DIFFERENTIABLE = {
    "add alpha": (lambda a, b: a.add(b, alpha=2.5), [A, ROW], None),
    "sub alpha": (lambda a, b: a.sub(b, alpha=-0.5).sub(1.5), [A, B], None),
    "mul div": (lambda a, b: a.mul(b).div(b.add(3.0)).div(2.0), [A, B], None),
    "neg pow matmul": (lambda a, b: a.neg().pow(3).matmul(b.t()), [A, B], None),
    "maximum broadcast": (lambda a, b: a.maximum(b), [A, ROW], None),
    "minimum with ties": (lambda a, b: a.minimum(b), [TIES, TIES.T.copy().reshape(3, 4)], None),
    "maximum ties": (lambda a, b: a.maximum(b), [TIES, np.where(MASK, TIES, 0.3)], None),
    "where": (lambda a, b: nn.where(nn.Tensor(MASK), a, b), [A, ROW],
              lambda a, b: torch.where(torch.tensor(MASK), a, b)),
    "x.where number": (lambda a: a.where(nn.Tensor(MASK), 0.5), [A],
                       lambda a: a.where(torch.tensor(MASK), 0.5)),
    "masked_fill": (lambda a: a.masked_fill(nn.Tensor(MASK[0]), -2.0), [A],
                    lambda a: a.masked_fill(torch.tensor(MASK[0]), -2.0)),
    "masked_fill tensor value": (lambda a, v: a.masked_fill(nn.Tensor(MASK), v.sum()), [A, ROW],
                                 lambda a, v: a.masked_fill(torch.tensor(MASK), v.sum())),
    "square sqrt rsqrt": (lambda a: a.square() + a.sqrt() * a.rsqrt().reciprocal(), [POSITIVE], None),
    "sin cos": (lambda a: a.sin() * a.cos(), [A], None),
    "log1p expm1": (lambda a: a.log1p() + a.expm1(), [A * 0.9], None),
    "sign floor round": (lambda a: a.sign() + (a * 4).floor() + (a * 3).round() + a.round(decimals=1) + a.ceil() +
                         a.trunc() + a, [A], None),
    "prod": (lambda a: a.prod(), [POSITIVE], None),
    "prod dim": (lambda a: a.prod(1), [A], None),
    "prod zeros keepdim": (lambda a: a.prod(0, keepdim=True) + a.prod(-1, keepdim=True), [ZEROS], None),
    "cumsum": (lambda a: a.cumsum(0) * a.cumsum(-1), [A], None),
    "amax amin": (lambda a: a.amax() + a.amin(dim=(0, 1)), [A], None),
    "amax ties dims": (lambda a: a.amax(1, keepdim=True) + a.amin(dim=0), [TIES], None),
    "flip roll": (lambda a: a.flip(0) * a.flip(0, 1) + a.roll(1, 1) + a.roll((1, -1), (0, 1)) + a.roll(5), [A], None),
    "chunk split unbind": (lambda a: nn.cat(a.chunk(3, 1)[::-1], 1) + nn.cat(a.split([1, 2], 0)[::-1], 0) +
                           nn.stack(a.unbind(1)[::-1], 1),
                           [A], lambda a: torch.cat(a.chunk(3, 1)[::-1], 1) + torch.cat(a.split([1, 2], 0)[::-1], 0) +
                           torch.stack(a.unbind(1)[::-1], 1)),
    "some parts used": (lambda a: a.chunk(3, 1)[1] * a.unbind(0)[2][:2] + a[0].unbind()[3] + a.split(2, 1)[1],
                        [A], None),
    "view_as t mT": (lambda a, b: a.view_as(b.t()) * b.t() + a.t().mT.t() + a.reshape(2, 2, 3).mT.reshape(4, 3),
                     [A, B], None),
    "gather repeats": (lambda a: a.gather(1, nn.Tensor(np.array([[0, 0, 3], [2, 1, 2]]))),
                       [A], lambda a: a.gather(1, torch.tensor([[0, 0, 3], [2, 1, 2]]))),
    "index_select repeats": (lambda a: a.index_select(1, nn.Tensor(np.array([3, 0, 3, 3]))) + 1.0,
                             [A], lambda a: a.index_select(1, torch.tensor([3, 0, 3, 3])) + 1.0),
    "sort values": (lambda a: a.sort(0).values * a.sort(dim=1, descending=True)[0], [A], None),
    "topk values": (lambda a: a.topk(2).values + a.topk(2, dim=0, largest=False)[0].sum(), [A], None),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(DIFFERENTIABLE))
def test_method_matches_torch_values_and_gradients(name, dtype):
    fn, arrays, torch_fn = DIFFERENTIABLE[name]
    _against_torch(fn, arrays, dtype, torch_fn)


FINITE_DIFFERENCES = {
    "cumsum": (lambda a: a.cumsum(1) * a.cumsum(0), A),
    "prod with zeros": (lambda a: a.prod(1) + a.prod(0).sum(), ZEROS),
    "amax ties": (lambda a: a.amax(1) + a.amin(0).sum(), TIES),
    "maximum ties": (lambda a: a.maximum(nn.Tensor(np.where(MASK, TIES, 0.3))), TIES),
    "gather repeats": (lambda a: a.gather(0, nn.Tensor(np.array([[2, 2, 0, 1], [2, 0, 0, 1]]))), A),
    "index_select repeats": (lambda a: a.index_select(0, nn.Tensor(np.array([1, 1, 2, 1]))), A),
    "sort": (lambda a: a.sort(1, descending=True).values * a.sort(0).values, A),
    "topk": (lambda a: a.topk(3, dim=1).values, A),
}


@pytest.mark.parametrize("name", list(FINITE_DIFFERENCES))
def test_non_trivial_gradients_match_finite_differences(name):
    fn, array = FINITE_DIFFERENCES[name]
    _check_finite_differences(fn, array)


def test_prod_gradient_with_one_and_two_zeros_matches_torch():
    array = np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.5, 2.0, 3.0]])
    _against_torch(lambda a: a.prod(1), [array], np.float64)
    _against_torch(lambda a: a.prod(), [array[2:]], np.float64)


def test_amax_of_a_nan_slice_gives_nan_gradient_as_torch():
    array = np.array([[1.0, np.nan, 2.0], [3.0, 3.0, 1.0]])
    x = nn.Tensor(array.copy(), requires_grad=True)
    reference = torch.tensor(array, requires_grad=True)
    x.amax(1).sum().backward()
    reference.amax(1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, reference.grad.numpy())


# ---- dtypes, devices, constructors -----------------------------------------------------------------------
def test_device_and_dtype_methods_as_torch():
    array = random_array((2, 3), np.float32)
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    assert ours.cpu() is ours and not ours.is_cuda and ours.is_cuda == theirs.is_cuda
    for method in ("int", "bool", "long", "float", "double"):
        got, expected = getattr(ours, method)(), getattr(theirs, method)()
        assert got.dtype == expected.numpy().dtype, method
        np.testing.assert_array_equal(got.data, expected.numpy())
    x = nn.Tensor(array, requires_grad=True)
    assert not x.int().requires_grad and not x.bool().requires_grad
    with pytest.raises(ValueError, match="cuda: only one GPU"):
        ours.cuda(1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_new_constructors_take_selfs_dtype_unless_given(dtype):
    ours, theirs = nn.Tensor(np.ones(2, dtype)), torch.ones(2, dtype=_torch_dtype(torch, dtype))
    pairs = [(ours.new_zeros(2, 3), theirs.new_zeros(2, 3)), (ours.new_ones((3,)), theirs.new_ones((3,))),
             (ours.new_full((2, 2), 2.75), theirs.new_full((2, 2), 2.75)),
             (ours.new_tensor([[1, 2], [3, 4]]), theirs.new_tensor([[1, 2], [3, 4]])),
             (ours.new_tensor(np.array([1.5, 2.5])), theirs.new_tensor(np.array([1.5, 2.5]))),
             (ours.new_zeros(2, dtype=np.float64), theirs.new_zeros(2, dtype=torch.float64)),
             (ours.new_full((2,), 1, dtype=np.bool_), theirs.new_full((2,), 1, dtype=torch.bool))]
    for got, expected in pairs:
        assert got.dtype == expected.numpy().dtype and got.is_leaf and not got.requires_grad
        np.testing.assert_array_equal(got.data, expected.numpy())
    source = nn.Tensor(np.array([1.0, 2.0]))
    copy = ours.new_tensor(source)
    assert copy.data is not source.data
    assert ours.new_zeros(2, dtype=np.float32, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match="new_zeros: device must be 'cpu' or 'cuda'"):
        ours.new_zeros(2, device="tpu")
    with pytest.raises(TypeError, match="new_full: fill_value must be a number"):
        ours.new_full((2,), "a")


@pytest.mark.parametrize("other", [0.25, 0, nn.Tensor(np.array([0.25, -1.0, 0.5, 0.75]))])
def test_comparison_methods_are_elementwise_bool_without_gradient(other):
    x = nn.Tensor(np.array([0.25, -1.0, 2.0, 0.0]), requires_grad=True)
    reference = torch.tensor(x.data)
    their_other = torch.tensor(other.data) if isinstance(other, nn.Tensor) else other
    for method in ("eq", "ne", "lt", "le", "gt", "ge"):
        got = getattr(x, method)(other)
        assert got.dtype == np.bool_ and not got.requires_grad
        np.testing.assert_array_equal(got.data, getattr(reference, method)(their_other).numpy(), err_msg=method)


@pytest.mark.filterwarnings("ignore:divide by zero")   # rsqrt(0), 1 / 0, log(0): infinite, as torch's
def test_result_dtypes_of_integer_and_bool_inputs_as_torch():
    integers, flags = np.array([[3, 1, 2], [0, 4, 1]], np.int32), np.array([True, False, True])
    cases = [lambda t: t.exp(), lambda t: t.log(), lambda t: t.sin(), lambda t: t.cos(), lambda t: t.log1p(), lambda t: t.expm1(), lambda t: t.rsqrt(),
             lambda t: t.reciprocal(), lambda t: t.square(), lambda t: t.sqrt(), lambda t: t.isnan(),
             lambda t: t.sign(), lambda t: t.floor(), lambda t: t.round(), lambda t: t.prod(), lambda t: t.prod(1),
             lambda t: t.cumsum(1), lambda t: t.amax(1), lambda t: t.flip(0), lambda t: t.add(t, alpha=2),
             lambda t: t.maximum(t.flip(1)), lambda t: t.sort(1).values, lambda t: t.topk(2).values]
    for index, fn in enumerate(cases):
        got, expected = fn(nn.Tensor(integers)), fn(torch.tensor(integers))
        assert got.dtype == expected.numpy().dtype, index
        assert_close(got.data.astype(np.float64), expected.double().numpy(), np.float32, name=str(index))
    for fn in (lambda t: t.prod(), lambda t: t.cumsum(0), lambda t: t.sign(), lambda t: t.amax(), lambda t: t.int()):
        got, expected = fn(nn.Tensor(flags)), fn(torch.tensor(flags))
        assert got.dtype == expected.numpy().dtype
        np.testing.assert_array_equal(got.data, expected.numpy())
    got, expected = nn.where(nn.Tensor(flags), 1.0, 0), torch.where(torch.tensor(flags), 1.0, 0)
    assert got.dtype == expected.numpy().dtype == np.float32
    assert nn.where(nn.Tensor(flags), nn.Tensor(integers[0]), 2.5).dtype == np.float32


def test_round_is_half_to_even_as_torch():
    array = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1.25, 2.35, -7.45, 123.456])
    for dtype in (np.float32, np.float64):
        for decimals in (0, 1, 2, -1):
            got = nn.Tensor(array.astype(dtype)).round(decimals=decimals)
            expected = torch.tensor(array.astype(dtype)).round(decimals=decimals)
            np.testing.assert_array_equal(got.data, expected.numpy(), err_msg=f"{dtype} decimals={decimals}")


def test_isnan_and_sort_topk_with_nans_as_torch():
    values = np.array([3.0, np.nan, 1.0, 3.0, -2.0, np.nan, 0.5])
    ours, theirs = nn.Tensor(values), torch.tensor(values)
    np.testing.assert_array_equal(ours.isnan().data, theirs.isnan().numpy())
    for descending in (False, True):
        got, expected = ours.sort(descending=descending), theirs.sort(descending=descending)
        np.testing.assert_array_equal(got.values.data, expected.values.numpy())
        nan_positions = np.isnan(values)
        got_nan = nan_positions[got.indices.data]
        np.testing.assert_array_equal(got_nan, nan_positions[expected.indices.numpy()])
    for largest in (True, False):
        got, expected = ours.topk(3, largest=largest), theirs.topk(3, largest=largest)
        np.testing.assert_array_equal(got.values.data, expected.values.numpy())
        assert got.indices.dtype == np.int64


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("dim, descending", [(-1, False), (0, True), (1, True), (0, False)])
def test_sort_argsort_and_topk_indices_of_distinct_values_match_torch(dtype, dim, descending):
    array = np.random.default_rng(5).permutation(35).reshape(5, 7).astype(dtype)
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    got, expected = ours.sort(dim, descending), theirs.sort(dim, descending)
    np.testing.assert_array_equal(got.values.data, expected.values.numpy())
    np.testing.assert_array_equal(got.indices.data, expected.indices.numpy())
    np.testing.assert_array_equal(ours.argsort(dim, descending).data, theirs.argsort(dim, descending).numpy())
    for k in (0, 1, 3):
        got, expected = ours.topk(k, dim, largest=descending), theirs.topk(k, dim, largest=descending)
        assert got.indices.dtype == np.int64 and got.values.shape == tuple(expected.values.shape)
        np.testing.assert_array_equal(got.indices.data, expected.indices.numpy())


def test_sort_of_ties_keeps_the_values_of_torch_and_stable_its_indices():
    array = np.array([[2.0, 1.0, 2.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0, 0.0]])
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    for descending in (False, True):
        got, expected = ours.sort(1, descending=descending), theirs.sort(1, descending=descending)
        np.testing.assert_array_equal(got.values.data, expected.values.numpy())
        np.testing.assert_array_equal(np.take_along_axis(array, got.indices.data, 1), got.values.data)
        stable = ours.sort(1, descending=descending, stable=True).indices
        np.testing.assert_array_equal(stable.data, theirs.sort(dim=1, descending=descending, stable=True).indices)
    np.testing.assert_array_equal(ours.topk(2).values.data, theirs.topk(2).values.numpy())


def test_split_and_chunk_shapes_as_torch():
    ours, theirs = nn.Tensor(np.arange(35.0).reshape(5, 7)), torch.arange(35.0).reshape(5, 7)
    for fn in (lambda t: t.chunk(3), lambda t: t.chunk(4, 1), lambda t: t.chunk(7, 1), lambda t: t.chunk(9),
               lambda t: t.split(2), lambda t: t.split(3, dim=-1), lambda t: t.split([2, 0, 5], 1),
               lambda t: t.unbind(), lambda t: t.unbind(-1)):
        got, expected = fn(ours), fn(theirs)
        assert len(got) == len(expected)
        for part, their_part in zip(got, expected):
            np.testing.assert_array_equal(part.data, their_part.numpy())


def test_chunks_are_views_as_torch():
    x = nn.Tensor(np.zeros((4, 3)))
    first, second = x.chunk(2)
    second.fill_(1.0)
    x.unbind(1)[0].add_(2.0)
    x.split([1, 3])[0][0, 2] = 5.0
    np.testing.assert_array_equal(x.data, [[2, 0, 5], [2, 0, 0], [3, 1, 1], [3, 1, 1]])


def test_masked_fill_in_place_follows_the_in_place_rules():
    x = nn.Tensor(A.copy(), requires_grad=True)
    expected = torch.tensor(A).masked_fill_(torch.tensor(MASK[1]), 0.5).numpy()
    with pytest.raises(RuntimeError, match="masked_fill_: a leaf Variable that requires grad"):
        x.masked_fill_(nn.Tensor(MASK[1]), 0.5)
    with nn.no_grad():
        assert x.masked_fill_(nn.Tensor(MASK[1]), 0.5) is x
    np.testing.assert_array_equal(x.data, expected)
    y = nn.Tensor(A.copy())
    y.masked_fill_(nn.Tensor(MASK), nn.Tensor(np.array(-3.0)))
    np.testing.assert_array_equal(y.data, np.where(MASK, -3.0, A))
    leaf = nn.Tensor(A.copy(), requires_grad=True)
    saved = leaf * 1.0
    out = (saved.sin()).sum()
    with nn.no_grad():
        saved.masked_fill_(nn.Tensor(MASK), 0.0)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.backward()
    with pytest.raises(ValueError, match=r"masked_fill_: a mask of shape \(2, 3\) does not broadcast"):
        nn.Tensor(A.copy()).masked_fill_(nn.Tensor(np.ones((2, 3), bool)), 1.0)
    with pytest.raises(RuntimeError, match="masked_fill_: this tensor is a copy made by permute"):
        nn.Tensor(A.copy()).t().masked_fill_(nn.Tensor(MASK.T.copy()), 1.0)


ERRORS = [
    (lambda x: x.div(x, rounding_mode="floor"), ValueError, "div: only rounding_mode=None"),
    (lambda x: x.long().add(x.long(), alpha=2.5), TypeError, "add: for integer tensors alpha must be an int"),
    (lambda x: x.sub(x, alpha="2"), TypeError, "sub: alpha must be a number"),
    (lambda x: x.maximum(1.0), TypeError, r"maximum: other must be a Tensor, got float \(for a number use clamp"),
    (lambda x: nn.where(x.long(), x, x), TypeError, "where: condition must be a bool tensor, got dtype int64"),
    (lambda x: nn.where(x > 0, "a", 1), TypeError, "where: input must be a Tensor or a number"),
    (lambda x: x.masked_fill(x, 1.0), TypeError, "masked_fill: mask must be a bool tensor, got dtype float64"),
    (lambda x: x.masked_fill(x > 0, x), ValueError, "masked_fill: the value must be a number or a 0-dim tensor"),
    (lambda x: (x > 0).neg(), TypeError, "neg: negation of a bool tensor"),
    (lambda x: x.bool().floor(), TypeError, "floor: not supported for bool tensors"),
    (lambda x: x.long().round(decimals=1), TypeError, "round: decimals=1 needs a floating-point tensor"),
    (lambda x: x.cumsum(2), IndexError, r"cumsum: dim 2 is out of range for a tensor of 2 dims \(expected in "
                                        r"\[-2, 1\]\)"),
    (lambda x: x.cumsum(None), TypeError, "cumsum: dim must be an int, got NoneType"),
    (lambda x: x.prod((0, 1)), TypeError, "prod: dim must be an int, got tuple"),
    (lambda x: x.amax((0, -2)), ValueError, "amax: a dim appears more than once"),
    (lambda x: x[:, :0].amin(1), ValueError, r"amin: cannot reduce over dim 1 of size 0 \(shape \(3, 0\)\)"),
    (lambda x: x.reshape(3, 2, 2).t(), ValueError, r"t: expects a tensor with at most 2 dims, got shape \(3, 2, 2\)"),
    (lambda x: x[0].mT, ValueError, "mT: needs a tensor with at least 2 dims"),
    (lambda x: x.view_as(np.zeros(12)), TypeError, "view_as: expected a Tensor"),
    (lambda x: x.flip(0, 0), ValueError, "flip: a dim appears more than once"),
    (lambda x: x.roll((1, 2), 0), ValueError, "roll: shifts and dims must have the same length"),
    (lambda x: x.chunk(0), ValueError, "chunk: chunks must be an int > 0, got 0"),
    (lambda x: x.split([1, 1]), ValueError, r"split: the sizes \[1, 1\] must add up to 3, the size of dim 0"),
    (lambda x: x.split(0), ValueError, "split: the split size must be an int > 0"),
    (lambda x: x.sum().unbind(), ValueError, "unbind: needs a tensor with at least 1 dim"),
    (lambda x: x.gather(1, x), TypeError, "gather: index must be an int64 or int32 tensor, got dtype float64"),
    (lambda x: x.gather(1, [[0]]), TypeError, "gather: index must be an int64 Tensor, got list"),
    (lambda x: x.gather(1, nn.Tensor(np.array([[0, 4]]))), IndexError,
     "gather: index 4 is out of bounds for dim 1 of size 4"),
    (lambda x: x.gather(0, nn.Tensor(np.array([[-1]]))), IndexError, "gather: index -1 is out of bounds for dim 0"),
    (lambda x: x.gather(0, nn.Tensor(np.array([0]))), ValueError, "gather: index must have 2 dims"),
    (lambda x: x.gather(0, nn.Tensor(np.zeros((1, 5), np.int64))), ValueError, "gather: index must have 2 dims "
                                                                              "with sizes at most"),
    (lambda x: x.index_select(0, nn.Tensor(np.zeros((1, 1), np.int64))), ValueError,
     r"index_select: index must be 1-D \(or 0-D\), got shape \(1, 1\)"),
    (lambda x: x.index_select(1, nn.Tensor(np.array([0.0]))), TypeError,
     "index_select: index must be an int64 or int32 tensor, got dtype float64"),
    (lambda x: x.index_select(2, nn.Tensor(np.array([0]))), IndexError, "index_select: dim 2 is out of range"),
    (lambda x: x.index_select(0, nn.Tensor(np.array([3]))), IndexError,
     "index_select: index 3 is out of bounds for dim 0 of size 3"),
    (lambda x: x.topk(5), ValueError, r"topk: k must be an int from 0 to 4 \(the size of dim -1\), got 5"),
    (lambda x: x.topk(2, dim=3), IndexError, "topk: dim 3 is out of range"),
    (lambda x: x.sort(dim=-3), IndexError, "sort: dim -3 is out of range"),
]


@pytest.mark.parametrize("index", range(len(ERRORS)))
def test_errors_name_the_method_and_what_was_expected(index):
    fn, kind, message = ERRORS[index]
    with pytest.raises(kind, match=message):
        fn(nn.Tensor(A.copy()))


def test_review_fixes_round_decimals_sign_nan_amax_none_invert_and_roll_errors():
    """round(decimals) scales in float32 as torch (0.35 -> 0.4; CuPy's own round scales in float64: 0.3), sign of
    NaN is 0, amax(dim=None) reduces everything, ~ and logical_not invert masks, a float shift is an error."""
    torch = torch_module()
    halves = np.array([0.35, 2.35, -7.45, 1.45, 0.15, 123.456, 0.55, np.nan], np.float32)
    for decimals in (1, 2, -1, 0):
        np.testing.assert_array_equal(nn.Tensor(halves).round(decimals=decimals).numpy(),
                                      torch.tensor(halves).round(decimals=decimals).numpy())
    np.testing.assert_array_equal(nn.Tensor(halves).sign().numpy(), torch.tensor(halves).sign().numpy())
    x = random_array((3, 4), np.float64, seed=70)
    assert float(nn.Tensor(x).amax(None).numpy()) == float(torch.tensor(x).amax())
    np.testing.assert_array_equal(nn.Tensor(x).amin(np.int64(1)).numpy(), torch.tensor(x).amin(1).numpy())
    mask, ints = np.array([True, False, True]), np.array([0, 5, -3])
    np.testing.assert_array_equal((~nn.Tensor(mask)).numpy(), (~torch.tensor(mask)).numpy())
    np.testing.assert_array_equal(nn.Tensor(mask).logical_not().numpy(), torch.tensor(mask).logical_not().numpy())
    np.testing.assert_array_equal((~nn.Tensor(ints)).numpy(), (~torch.tensor(ints)).numpy())
    with pytest.raises(TypeError, match="invert: ~ takes bool or integer tensors, got float64"):
        ~nn.Tensor(x)
    with pytest.raises(TypeError, match=r"neg: negation of a bool tensor .* use ~x"):
        -nn.Tensor(mask)
    with pytest.raises(TypeError, match="roll: shifts must be an int or a tuple of ints, got 1.5"):
        nn.Tensor(x).roll(1.5)
    with pytest.raises(TypeError, match="amax: dim must be an int or a tuple of ints, got 'a'"):
        nn.Tensor(x).amax("a")
