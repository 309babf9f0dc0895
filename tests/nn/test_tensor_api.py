"""The torch.Tensor methods users write without thinking (clone, casts, clamp, expand, repeat, rpow, min,
var/std, norm, in-place ops) against PyTorch in float64: values, result dtypes, gradients, errors; float64
finite differences for the non-trivial gradients."""
import numpy as np
import pytest

import nn
from tests.oracle import (assert_close, finite_difference_gradient, random_array, torch_module,
                          torch_reference)


def _compare(fn, *arrays, torch_fn=None):
    """fn on our float64 Tensors and (torch_fn or fn) on torch's: the outputs and the gradients of
    sum(out * g) for a random g."""
    ours = [nn.Tensor(a.copy(), requires_grad=True) for a in arrays]
    out = fn(*ours)
    g = random_array(out.shape, np.float64, seed=99)
    expected, grads = torch_reference(torch_fn or fn, *arrays, grad_output=g)
    assert_close(out.data, expected, np.float64, name="forward")
    assert out.dtype == np.float64
    out.backward(g)
    for index, (tensor, grad) in enumerate(zip(ours, grads)):
        assert_close(tensor.grad.data, grad, np.float64, name=f"gradient {index}")


def _check_finite_differences(fn, array):
    x = nn.Tensor(array.copy(), requires_grad=True)
    out = fn(x)
    g = random_array(out.shape, np.float64, seed=7)
    out.backward(g)
    probe = array.copy()
    numeric = finite_difference_gradient(lambda: float((fn(nn.Tensor(probe)).data * g).sum()), probe)
    assert_close(x.grad.data, numeric, np.float64, rtol=1e-6, atol=1e-7, name="finite differences")


def _leaf(shape=(3,), dtype=np.float64):
    return nn.Tensor(random_array(shape, dtype, seed=3), requires_grad=True)


# ---- copies and casts ------------------------------------------------------------------------------------
def test_clone_is_a_differentiable_copy():
    x = _leaf((2, 3))
    y = x.clone()
    assert not y.is_leaf and y.data is not x.data
    y.data[0, 0] = 5.0
    assert x.data[0, 0] != 5.0
    _compare(lambda a: a.clone() * a, random_array((2, 3), np.float64))
    with nn.no_grad():
        assert not x.clone().requires_grad


def test_dim_tolist_and_casts_as_torch():
    torch = torch_module()
    array = random_array((2, 3), np.float32)
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    assert ours.dim() == theirs.dim() == 2
    assert ours.tolist() == theirs.tolist()
    assert ours.float() is ours  # torch returns self when the dtype already matches
    for method in ("float", "double", "long"):
        assert str(getattr(ours, method)().dtype) == str(getattr(theirs, method)().dtype).replace("torch.", "")
    assert ours.type_as(nn.Tensor(np.zeros(1))).dtype == np.float64
    x = _leaf((2, 3), np.float32)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    assert_close(x.grad.data, 2 * x.data, np.float32)
    assert not x.long().requires_grad
    with pytest.raises(TypeError, match="type_as: expected a Tensor"):
        ours.type_as(np.float64)


def test_to_takes_torchs_forms_and_names_itself_in_errors():
    """Tensor.to(dtype), (device, dtype), (other tensor) and keywords, as torch.Tensor.to: self when nothing
    changes (unless copy=True); a floating cast is differentiable, its gradient in the source dtype."""
    torch = torch_module()
    array = random_array((2, 3), np.float32, seed=4)
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    forms = [((np.float64,), (torch.float64,), {}), (("cpu", np.float64), ("cpu", torch.float64), {}),
             ((), (), dict(dtype=np.int64)), (("cpu",), ("cpu",), dict(dtype=np.float64)),
             ((), (), dict(device="cpu", dtype=np.float64)), ((np.float32,), (torch.float32,), {}),
             (("cpu",), ("cpu",), {}), ((np.float64,), (torch.float64,), dict(non_blocking=True)),
             ((np.float32,), (torch.float32,), dict(copy=True)),
             ((nn.Tensor(np.zeros(1)),), (torch.zeros(1, dtype=torch.float64),), {})]
    for our_args, their_args, kwargs in forms:
        their_kwargs = dict(kwargs)
        if "dtype" in kwargs:
            their_kwargs["dtype"] = getattr(torch, np.dtype(kwargs["dtype"]).name)
        got, expected = ours.to(*our_args, **kwargs), theirs.to(*their_args, **their_kwargs)
        assert str(got.dtype) == str(expected.dtype).replace("torch.", ""), (our_args, kwargs)
        assert (got is ours) == (expected is theirs), (our_args, kwargs)
        assert_close(got.data, expected.numpy(), np.float64)
    x = _leaf((2, 3), np.float32)
    y = x.to(np.float64)
    assert y.requires_grad and not x.to(np.int64).requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    assert_close(x.grad.data, 2 * x.data, np.float32)
    copied = x.to("cpu", copy=True)
    assert copied is not x and copied.requires_grad
    with pytest.raises(ValueError, match="Tensor.to: device must be 'cpu' or 'cuda', got 'tpu'"):
        ours.to(device="tpu")
    with pytest.raises(TypeError, match="Tensor.to: expected a device .* or a dtype, got 'gpu'"):
        ours.to("gpu")
    with pytest.raises(TypeError, match="Tensor.to: expected \\(device\\), \\(dtype\\) or \\(device, dtype\\)"):
        ours.to("cpu", np.float64, 5)


def test_only_floating_tensors_can_require_grad_as_torch():
    """requires_grad_(), Parameter(...) and nn.tensor(..., requires_grad=True) on an integer or bool tensor raise
    torch's error; turning it off, and integer tensors that do not require grad, stay fine. (nn.Tensor(...,
    requires_grad=True) does not check: autograd builds a Function's integer outputs through it.)"""
    torch = torch_module()
    for array in (np.array([1, 2]), np.array([True, False]), np.array([1, 2], np.uint8)):
        with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
            torch.from_numpy(array).requires_grad_()
        with pytest.raises(RuntimeError, match=f"requires_grad_: only Tensors of floating point dtype can require "
                                               f"gradients, got {array.dtype}"):
            nn.Tensor(array).requires_grad_()
        with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype"):
            torch.nn.Parameter(torch.from_numpy(array))
        with pytest.raises(RuntimeError, match="Parameter: only Tensors of floating point dtype"):
            nn.Parameter(array)
        with pytest.raises(RuntimeError, match="Only Tensors of floating point and complex dtype"):
            torch.tensor(array, requires_grad=True)
        with pytest.raises(RuntimeError, match="tensor: only Tensors of floating point dtype"):
            nn.tensor(array, requires_grad=True)
        assert not nn.Tensor(array).requires_grad_(False).requires_grad
        assert not nn.Parameter(array, requires_grad=False).requires_grad
    assert nn.Tensor(np.ones(2, np.float32)).requires_grad_().requires_grad


def test_an_integer_tensor_with_a_float_number_is_float32_as_torch():
    torch = torch_module()
    integers = np.array([1, 2, 3])
    for fn in (lambda t: t * 0.5, lambda t: 2.5 - t, lambda t: t / 0.5, lambda t: 1.5 / t, lambda t: (t > 1) + 0.5,
               lambda t: t + 2, lambda t: 0.5 ** t, lambda t: t ** 0.5, lambda t: t ** 2):
        ours, theirs = fn(nn.Tensor(integers)), fn(torch.tensor(integers))
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        assert_close(ours.data, theirs.numpy(), np.float64)


@pytest.mark.filterwarnings("ignore:divide by zero")   # 3 / False is inf, as torch's
def test_true_division_of_integer_tensors_is_float32_as_torch():
    """int / number and int / int tensor give torch's default dtype (float32), not NumPy's float64; an integer
    tensor with a floating one takes the floating dtype; + - * between integers stay integers."""
    torch = torch_module()
    a, b = np.array([7, -3, 4]), np.array([2, 5, -8])
    ints = [(a, np.int64), (a.astype(np.int32), np.int32), (a.astype(np.uint8) % 5 + 1, np.uint8), (a > 0, bool)]
    for array, _ in ints:
        for fn in (lambda t, u: t / 2, lambda t, u: 3 / t, lambda t, u: t / u, lambda t, u: u / t,
                   lambda t, u: t / u.double(), lambda t, u: t / u.float(), lambda t, u: u.double() / t,
                   lambda t, u: t + u, lambda t, u: t * 3, lambda t, u: u - t * 1, lambda t, u: t + 2):
            ours = fn(nn.Tensor(array), nn.Tensor(b))
            theirs = fn(torch.tensor(array), torch.tensor(b))
            assert str(ours.dtype) == str(theirs.dtype).replace("torch.", ""), (array.dtype, ours.dtype, theirs.dtype)
            assert_close(ours.data, theirs.numpy(), ours.dtype if ours.dtype.kind == "f" else np.float64)


def test_comparisons_truth_and_item_as_torch():
    torch = torch_module()
    array = random_array((3, 4), np.float64, seed=15)
    ours, theirs = nn.Tensor(array), torch.tensor(array)
    for fn in (lambda t: t >= 0.1, lambda t: t <= 0.1, lambda t: (t > 0).any(), lambda t: (t > 0).all(1),
               lambda t: (t > 0.5).any(0, keepdim=True), lambda t: abs(t)):
        np.testing.assert_array_equal(fn(ours).data, fn(theirs).numpy())
    for fn in (lambda t: (t > 0).sum(), lambda t: t.sum(), lambda t: (t > 0).all()):
        assert type(fn(ours).item()) is type(fn(theirs).item()) and fn(ours).item() == pytest.approx(fn(theirs).item())
    assert bool(ours.sum() > -100.0) and not bool(ours.sum() < -100.0)
    with pytest.raises(ValueError, match=r"bool: the truth of a tensor of shape \(3, 4\) is ambiguous"):
        bool(ours)


# ---- clamp -----------------------------------------------------------------------------------------------
# Values on both bounds (0.25 and 0.75, exact in binary) and a NaN: torch passes the gradient on the bounds
# and not through the NaN.
CLAMP_INPUT = np.array([[-0.9, 0.25, 0.3, 0.75], [0.9, np.nan, 0.5, -0.1], [0.6, 0.1, 0.74, 0.26]])


@pytest.mark.parametrize("bounds", [dict(min=0.25, max=0.75), dict(min=0.25), dict(max=0.75),
                                    dict(min=0.75, max=0.25)])  # min > max: all max, no gradient
def test_clamp_matches_torch(bounds):
    _compare(lambda a: a.clamp(**bounds) * 2.0, CLAMP_INPUT)
    _compare(lambda a: a.clip(**bounds), CLAMP_INPUT)


def test_clamp_min_max_and_finite_differences():
    x = random_array((4, 7), np.float64, seed=1)
    _compare(lambda a: a.clamp_min(-0.3) + a.clamp_max(0.2), x)
    _check_finite_differences(lambda a: a.clamp(-0.3, 0.2), x)


def test_clamp_dtypes_and_errors():
    torch = torch_module()
    integers = np.array([-3, 0, 5])
    assert nn.Tensor(integers).clamp(0, 2).dtype == np.int64
    assert nn.Tensor(integers).clamp(0, 2).tolist() == torch.tensor(integers).clamp(0, 2).tolist()
    assert nn.Tensor(integers).clamp(max=0.5).dtype == np.float32  # torch: float32
    assert torch.tensor(integers).clamp(max=0.5).dtype == torch.float32
    assert nn.Tensor(np.zeros(2, np.float32)).clamp(0.1).dtype == np.float32
    with pytest.raises(ValueError, match="clamp: at least one of min or max"):
        _leaf().clamp()
    with pytest.raises(TypeError, match="clamp: min must be a number or None.*got Tensor"):
        _leaf().clamp(min=_leaf())


@pytest.mark.parametrize("array, bounds", [
    (np.array([0, 5, 200], np.uint8), dict(min=-1)), (np.array([0, 5, 200], np.uint8), dict(min=-255)),
    (np.array([0, 5, 200], np.uint8), dict(max=-1)), (np.array([0, 5, 200], np.uint8), dict(max=255)),
    (np.array([0, 5, 200], np.uint8), dict(min=3, max=-56)), (np.array([0, 5, 200], np.uint8), dict(min=-256)),
    (np.array([0, 5, 200], np.uint8), dict(max=256)), (np.array([-100, 5, 100], np.int8), dict(min=-128, max=127)),
    (np.array([-100, 5, 100], np.int8), dict(min=-1000)), (np.array([-100, 5, 100], np.int8), dict(max=128)),
    (np.array([-100, 5, 100], np.int32), dict(max=2 ** 40)), (np.array([True, False]), dict(min=0)),
    (np.array([True, False]), dict(min=2)), (np.array([True, False]), dict(max=0)),
])
def test_clamp_of_small_integer_dtypes_as_torch(array, bounds):
    """An int bound converts to the tensor's dtype as torch converts it: an unsigned dtype takes a negative bound
    in two's complement (uint8: -1 is 255), beyond the range is an error (an OverflowError before); bool is
    promoted to int64."""
    torch = torch_module()
    try:
        expected = torch.from_numpy(array).clamp(**bounds)
    except RuntimeError as error:
        assert "without overflow" in str(error)
        with pytest.raises(ValueError, match=f"clamp: {list(bounds)[-1]}=.* cannot be converted to the tensor's "
                                             f"dtype {array.dtype} without overflow"):
            nn.Tensor(array).clamp(**bounds)
        return
    ours = nn.Tensor(array).clamp(**bounds)
    assert str(ours.dtype) == str(expected.dtype).replace("torch.", "")
    assert ours.tolist() == expected.tolist()


# ---- expand and repeat -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, sizes", [((3, 1), (3, 5)), ((1, 3), (4, -1)), ((5,), (2, 3, 5)),
                                          ((2, 1, 3), (7, 2, 4, -1)), ((1,), (3,))])
def test_expand_matches_torch_and_finite_differences(shape, sizes):
    x = random_array(shape, np.float64, seed=2)
    _compare(lambda a: a.expand(*sizes) * 1.5, x)
    _compare(lambda a: a.expand(sizes), x)
    _check_finite_differences(lambda a: a.expand(sizes), x)


def test_expand_as_and_its_errors():
    y = nn.Tensor(np.zeros((2, 4, 3)))
    _compare(lambda a, b: a.expand_as(b) * b, random_array((4, 1), np.float64), random_array((2, 4, 3), np.float64))
    assert _leaf((4, 1)).expand_as(y).shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"expand: needs at least 2 sizes for a tensor of shape \(2, 3\)"):
        nn.Tensor(np.ones((2, 3))).expand(3)
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(3,\) to \(2, 4\): at dim 1 .* 3"):
        nn.Tensor(np.ones(3)).expand(2, 4)
    with pytest.raises(ValueError, match="expand: .*-1 only for an existing dim"):
        nn.Tensor(np.ones(3)).expand(-1, 3)
    with pytest.raises(TypeError, match="expand: sizes must be ints"):
        nn.Tensor(np.ones(3)).expand(3.0)
    with pytest.raises(TypeError, match="expand_as: expected a Tensor"):
        nn.Tensor(np.ones(3)).expand_as((2, 3))


@pytest.mark.parametrize("shape, repeats", [((2, 3), (3, 1)), ((3,), (2, 2)), ((1, 2, 3), (2, 1, 3)), ((2,), (0,))])
def test_repeat_matches_torch(shape, repeats):
    x = random_array(shape, np.float64, seed=4)
    _compare(lambda a: a.repeat(*repeats) * 2.0, x)
    _check_finite_differences(lambda a: a.repeat(repeats), x)


def test_repeat_errors():
    with pytest.raises(ValueError, match=r"repeat: needs at least 2 counts >= 0 for a tensor of shape \(2, 3\)"):
        nn.Tensor(np.ones((2, 3))).repeat(2)
    with pytest.raises(ValueError, match="repeat: needs at least 1 counts >= 0"):
        nn.Tensor(np.ones(3)).repeat(-1)


# ---- powers ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("base", [2, 0.5, 3.7])
def test_rpow_matches_torch_and_finite_differences(base):
    x = random_array((3, 5), np.float64, seed=5)
    _compare(lambda a: base ** a, x)
    _check_finite_differences(lambda a: base ** a, x)


def test_pow_with_a_tensor_exponent_broadcasts():
    a = random_array((4, 3), np.float64, seed=6, low=0.5, high=2.0)
    b = random_array((3,), np.float64, seed=7, low=-2.0, high=2.0)
    _compare(lambda x, y: x ** y, a, b)
    _compare(lambda x, y: y ** x, a, b[:1] + 3.0)
    _check_finite_differences(lambda x: x ** nn.Tensor(b), a)
    _check_finite_differences(lambda y: nn.Tensor(a) ** y, b)
    assert_close((np.full(3, 2.0) ** nn.Tensor(b)).data, 2.0 ** b, np.float64)  # an array base


def test_pow_at_zero_base_and_zero_exponent_as_torch():
    torch = torch_module()
    base = np.array([0.0, 2.0, 0.0, 0.0])
    exponent = np.array([0.0, 1.0, -1.0, 2.0])
    with np.errstate(divide="ignore"):
        _compare(lambda x, y: x ** y, base, exponent)
        _compare(lambda y: 0.0 ** y, exponent)
    _compare(lambda x: x ** 0, base)  # torch: zero, not 0 * 0 ** -1
    assert (2 ** nn.Tensor(np.array([1, 2]))).dtype == np.int64 == (2 ** torch.tensor([1, 2])).numpy().dtype
    assert (2.5 ** nn.Tensor(np.array([1, 2]))).dtype == np.float32
    with pytest.raises(TypeError, match="pow: the exponent must be a number or a Tensor, got str"):
        _leaf() ** "2"


# ---- min, max, argmin ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), (-1, False)])
def test_min_matches_torch_and_finite_differences(dim, keepdim):
    torch = torch_module()
    x = random_array((4, 5), np.float64, seed=8)
    if dim is None:
        _compare(lambda a: a.min() * 3.0, x)
        _check_finite_differences(lambda a: a.min(), x)
        assert int(nn.Tensor(x).argmin().data) == int(torch.tensor(x).argmin())
        return
    _compare(lambda a: a.min(dim, keepdim=keepdim).values * 3.0, x)
    _check_finite_differences(lambda a: a.min(dim, keepdim)[0], x)
    ours, theirs = nn.Tensor(x).min(dim, keepdim), torch.tensor(x).min(dim, keepdim)
    np.testing.assert_array_equal(ours.indices.data, theirs.indices.numpy())
    np.testing.assert_array_equal(nn.Tensor(x).argmin(dim, keepdim).data, torch.tensor(x).argmin(dim, keepdim).numpy())
    np.testing.assert_array_equal(nn.Tensor(x).argmax(dim, keepdim).data, torch.tensor(x).argmax(dim, keepdim).numpy())


@pytest.mark.parametrize("values", [[1.0, 3.0, 3.0, -2.0, -2.0], [1.0, np.nan, 0.5, np.nan, 2.0]])
def test_min_and_max_share_the_gradient_of_ties_and_nans_as_torch(values):
    x = np.array(values)
    _compare(lambda a: a.max(), x)
    _compare(lambda a: a.min(), x)
    _compare(lambda a: a.reshape(1, 5).min(1)[0] + a.reshape(1, 5).max(1)[0], x)  # with dim: the first only


def test_min_with_a_tensor_is_not_the_elementwise_minimum():
    with pytest.raises(TypeError, match="min: dim must be an int or None.*got Tensor"):
        _leaf().min(_leaf())


@pytest.mark.parametrize("shape, kwargs", [((0,), {}), ((0, 3), {}), ((3, 0), dict(dim=1)), ((0, 3), dict(dim=0)),
                                           ((3, 0), dict(dim=(0, 1), keepdim=True)), ((2, 0, 4), dict(dim=-2))])
def test_mean_over_no_elements_is_nan_as_torch(shape, kwargs):
    """An empty tensor's mean (or the mean over an empty dim) is nan, not a ZeroDivisionError; the gradient
    (empty) has the input's shape."""
    torch = torch_module()
    x = nn.Tensor(np.zeros(shape), requires_grad=True)
    out = x.mean(**kwargs)
    expected = torch.zeros(shape, dtype=torch.float64).mean(**kwargs)
    assert out.shape == tuple(expected.shape) and out.dtype == np.float64
    assert np.isnan(out.data).all() and torch.isnan(expected).all()
    out.sum().backward()
    assert x.grad.shape == shape


# ---- var, std, norm --------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["var", "std"])
@pytest.mark.parametrize("kwargs", [dict(), dict(dim=1), dict(dim=(0, 2), keepdim=True), dict(dim=-1, unbiased=False),
                                    dict(dim=0, correction=2), dict(correction=0)])
def test_var_std_match_torch_and_finite_differences(method, kwargs):
    x = random_array((3, 4, 5), np.float64, seed=9)
    _compare(lambda a: getattr(a, method)(**kwargs), x)
    _check_finite_differences(lambda a: getattr(a, method)(**kwargs), x)


def test_var_std_edge_cases_as_torch():
    constant = np.array([[2.0, 2.0, 2.0], [1.0, 3.0, 0.5]])
    _compare(lambda a: a.std(1), constant)  # a zero std: no gradient (not 0 * inf), as torch
    _compare(lambda a: a.var(False) + a.std(0, False), constant)
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(nn.Tensor(np.ones(1)).var().item())  # no degrees of freedom: NaN, as torch
        assert np.isnan(nn.Tensor(np.ones(3)).var(correction=5).item())
    with pytest.raises(TypeError, match="var: needs a floating-point tensor, got int64"):
        nn.Tensor(np.arange(3)).var()
    with pytest.raises(ValueError, match="std: give unbiased or correction, not both"):
        _leaf().std(unbiased=False, correction=0)


@pytest.mark.parametrize("kwargs", [dict(), dict(p=2, dim=1), dict(p="fro", dim=(0, 1), keepdim=True),
                                    dict(p=1, dim=0)])
def test_norm_matches_torch(kwargs):
    x = random_array((4, 3), np.float64, seed=10)
    _compare(lambda a: a.norm(**kwargs), x)
    _check_finite_differences(lambda a: a.norm(**kwargs), x)


def test_norm_of_zeros_has_no_gradient_and_p_is_checked():
    _compare(lambda a: a.norm(dim=1), np.array([[0.0, 0.0], [3.0, 4.0]]))
    with pytest.raises(ValueError, match="norm: p must be 1, 2 or 'fro', got 3"):
        _leaf().norm(3)


# ---- in place --------------------------------------------------------------------------------------------
def test_in_place_ops_on_plain_tensors_match_torch():
    torch = torch_module()
    array = random_array((3, 4), np.float64, seed=11)
    other = random_array((4,), np.float64, seed=12)
    ours, theirs = nn.Tensor(array.copy()), torch.tensor(array)
    storage = ours.data
    for step in (lambda t, o: t.add_(o, alpha=0.5), lambda t, o: t.sub_(o, alpha=2), lambda t, o: t.mul_(o),
                 lambda t, o: t.div_(o)):
        assert step(ours, nn.Tensor(other)) is ours
        step(theirs, torch.tensor(other))
        assert_close(ours.data, theirs.numpy(), np.float64)
    ours[1, ::2] = 7.0
    theirs[1, ::2] = 7.0
    ours[ours > 1.0] = nn.Tensor(np.array(-1.0))
    theirs[theirs > 1.0] = -1.0
    assert_close(ours.data, theirs.numpy(), np.float64)
    ours.copy_(nn.Tensor(other.astype(np.float32)))  # broadcast and cast, as torch
    theirs.copy_(torch.tensor(other, dtype=torch.float32))
    assert_close(ours.data, theirs.numpy(), np.float64)
    assert ours.fill_(nn.Tensor(np.array(2.5))).data.max() == 2.5
    assert ours.zero_().data.max() == 0.0
    assert ours.data is storage  # all in place


def test_in_place_on_a_leaf_that_requires_grad_raises_unless_under_no_grad():
    for op in (lambda p: p.zero_(), lambda p: p.fill_(1.0), lambda p: p.copy_(np.ones(3)),
               lambda p: p.__setitem__(0, 1.0), lambda p: p.add_(1.0)):
        p = _leaf()
        with pytest.raises(RuntimeError, match=r"^\w+_?: a leaf Variable that requires grad is being used in an in-place"):
            op(p)
        with nn.no_grad():
            result = op(p)
        assert result is None or result is p
        assert p.requires_grad and p.is_leaf
    with pytest.raises(RuntimeError, match="add_: a leaf Variable"):
        p = _leaf()
        p += 1.0


def test_in_place_on_a_recorded_tensor_or_from_a_recorded_source_raises():
    x = _leaf()
    with pytest.raises(RuntimeError, match="zero_: in-place operations on a tensor of a recorded graph"):
        (x * 2.0).zero_()
    with pytest.raises(RuntimeError, match="copy_: the source requires grad"):
        nn.Tensor(np.zeros(3)).copy_(x * 2.0)
    with pytest.raises(RuntimeError, match="__setitem__: the source requires grad"):
        nn.Tensor(np.zeros(3))[0] = x[1]


def test_in_place_errors_name_the_op():
    x = nn.Tensor(np.zeros(3))
    with pytest.raises(ValueError, match=r"fill_: the value must be a number or a 0-dim tensor, got shape \(2,\)"):
        x.fill_(nn.Tensor(np.ones(2)))
    with pytest.raises(ValueError, match=r"copy_: .*broadcast.*\(tensor of shape \(3,\)\)"):
        x.copy_(np.ones(2))
    with pytest.raises(TypeError, match="copy_: src must be a Tensor or an array, got float"):
        x.copy_(1.0)
    with pytest.raises(TypeError, match="__setitem__: expected a Tensor, an array or a number, got str"):
        x[0] = "a"
    with pytest.raises(TypeError, match="add_: .*int64"):
        nn.Tensor(np.arange(3)).add_(0.5)  # torch: a float result cannot be written into an integer tensor


class _OnTheGpu(np.ndarray):
    """A NumPy array that backend.is_gpu_array takes for a CuPy one (it goes by the type's module), so that the
    device checks run here without a GPU; get() copies it to the host, as CuPy's."""
    __module__ = "cupy.stand_in"

    def get(self):
        return np.asarray(self).copy()


def test_in_place_arithmetic_across_devices_raises_as_out_of_place_and_copy_crosses():
    """add_/sub_/mul_/div_ (and +=) with an operand on the other device raise, as x + y does (and torch's in-place
    ops); they used to copy it across silently. copy_ copies across devices, as torch's."""
    host = np.arange(1.0, 4.0)
    for ours, other in ((nn.Tensor(host.copy()), nn.Tensor(host.copy().view(_OnTheGpu))),
                        (nn.Tensor(host.copy()), host.copy().view(_OnTheGpu)),
                        (nn.Tensor(host.copy().view(_OnTheGpu)), nn.Tensor(host.copy()))):
        assert ours.device != nn.Tensor(other).device   # the stand-in is taken for a GPU array
        with pytest.raises(ValueError):
            ours + other   # out of place: the device error
        for op in ("add_", "sub_", "mul_", "div_"):
            with pytest.raises(ValueError, match=f"{op}: the other operand is on (cuda|cpu) but this tensor is on "
                                                 f"(cpu|cuda); move it with .to"):
                getattr(ours, op)(other)
        with pytest.raises(ValueError, match="add_: the other operand is on"):
            ours += other
        np.testing.assert_array_equal(np.asarray(ours.data), host)   # nothing written
    target = nn.Tensor(np.zeros(3))
    target.copy_(nn.Tensor(host.copy().view(_OnTheGpu)))
    np.testing.assert_array_equal(target.data, host)


def test_augmented_assignment_in_place_or_recorded_as_torch():
    torch = torch_module()
    array = random_array((3,), np.float64, seed=13)
    total, theirs_total = nn.Tensor(np.zeros(3)), torch.zeros(3, dtype=torch.float64)
    storage = total.data
    total += nn.Tensor(array)  # nothing recorded: in place
    total *= 2.0
    assert total.data is storage
    theirs_total += torch.tensor(array)
    theirs_total *= 2.0

    def accumulate(tensor, total):
        hidden = tensor * 3.0
        hidden += tensor  # a recorded non-leaf: torch records in place, here a new tensor, same gradient
        hidden /= 2.0
        total += hidden * hidden  # a plain tensor and a source that requires grad: recorded, as torch
        return total

    x, theirs_x = nn.Tensor(array.copy(), requires_grad=True), torch.tensor(array, requires_grad=True)
    total, theirs_total = accumulate(x, total), accumulate(theirs_x, theirs_total)
    assert total.requires_grad
    assert_close(total.data, theirs_total.detach().numpy(), np.float64)
    total.sum().backward()
    theirs_total.sum().backward()
    assert_close(x.grad.data, theirs_x.grad.numpy(), np.float64)


def test_manual_sgd_and_ema_updates_under_no_grad_write_the_parameters():
    torch = torch_module()
    torch.manual_seed(0)
    theirs = torch.nn.Linear(5, 3).double()
    ours = nn.Linear(5, 3, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())   # copied into our arrays: the updates below do not reach torch's
    assert not any(np.shares_memory(p.data, t.detach().numpy()) for p, t in zip(ours.parameters(), theirs.parameters()))
    average = [p.detach().clone() for p in ours.parameters()]
    theirs_average = [p.detach().clone() for p in theirs.parameters()]
    x = random_array((4, 5), np.float64, seed=14)
    storages = [p.data for p in ours.parameters()]
    for model, module_input, averaged in ((ours, nn.Tensor(x), average), (theirs, torch.tensor(x), theirs_average)):
        (model(module_input) ** 2).sum().backward()
        with (nn.no_grad() if model is ours else torch.no_grad()):
            for p, a in zip(model.parameters(), averaged):
                p -= 0.1 * p.grad
                a.mul_(0.9).add_(p, alpha=0.1)
            model.bias.zero_()
            model.weight[0] = 1.0
    for mine, reference in zip(list(ours.parameters()) + average, list(theirs.parameters()) + theirs_average):
        assert_close(mine.data, reference.detach().numpy(), np.float64)
    assert all(p.data is storage for p, storage in zip(ours.parameters(), storages))
    assert all(p.requires_grad and p.is_leaf for p in ours.parameters())


@pytest.mark.parametrize("make, what", [
    (lambda x: x.T, "permute"), (lambda x: x.transpose(0, 1), "permute"), (lambda x: x[:1].expand(3, 4), "expand"),
    (lambda x: x.T.reshape(-1), "permute"), (lambda x: x.T[0], "permute"), (lambda x: x.T.detach(), "permute"),
])
def test_in_place_ops_refuse_a_copy_that_torch_would_make_a_view(make, what):
    """permute and expand copy here where torch returns a view: writing into that copy (or a view of it) would
    silently leave the original unchanged, so in-place ops refuse it; contiguous() and clone() give a copy of
    one's own, as torch's contiguous() does for a permuted tensor."""
    x = nn.Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    for write in (lambda t: t.zero_(), lambda t: t.fill_(1.0), lambda t: t.add_(1.0), lambda t: t.__setitem__(0, 1.0)):
        with pytest.raises(RuntimeError, match=f"copy made by {what}.*write into that tensor"):
            write(make(x))
    np.testing.assert_array_equal(x.numpy(), np.arange(12).reshape(3, 4))
    for own in (make(x).clone(), make(x).contiguous()):
        own.zero_()
    assert x.numpy().sum() == 66


def test_indexing_with_ints_and_slices_gives_views_that_in_place_ops_write_through():
    """As torch: x[i] op= v, a row zeroed through x[0], a column filled through a reshape of it, a parameter
    edited under no_grad; a mask or position array gives a copy (in torch too). A single element is 0-d."""
    torch = torch_module()
    ours = nn.Tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    theirs = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    for edit in (lambda t: t.__setitem__(1, t[1].__iadd__(5.0)),           # x[1] += 5
                 lambda t: t[:, 2].__imul__(2.0),                          # col = x[:, 2]; col *= 2
                 lambda t: t[0].zero_(),
                 lambda t: t[:, 0].reshape(-1).fill_(-1.0),
                 lambda t: t[..., 3].unsqueeze(0).add_(1.0)):
        edit(ours)
        edit(theirs)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    chosen = ours[np.array([0, 2])]
    chosen.zero_()
    assert ours.numpy()[2].sum() != 0
    assert ours[1, 2].shape == () and ours[1, 2].item() == theirs[1, 2].item()
    weight = nn.Parameter(np.ones((2, 3), np.float32))
    with nn.no_grad():
        weight[0] += 1.0
    np.testing.assert_array_equal(weight.numpy(), [[2, 2, 2], [1, 1, 1]])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        weight[0] += 1.0


def test_backward_refuses_an_array_written_in_place_after_the_forward_saved_it():
    """torch's version counters: a Function whose saved array was written in place since its forward (through the
    tensor itself or a view of it, by +=, an in-place method, load_state_dict or nn.init) raises at backward
    instead of giving a gradient computed from the new values; writes to arrays it did not save are fine."""
    torch = torch_module()
    for write in (lambda x: x.__iadd__(10.0), lambda x: x[1:].mul_(2.0), lambda x: nn.init.zeros_(x)):
        x = nn.Tensor(np.array([1.0, 2.0, 3.0], np.float32))
        w = nn.Tensor(np.array([1.0, 1.0, 1.0], np.float32), requires_grad=True)
        loss = (x * w).sum()
        with nn.no_grad():
            write(x)
        with pytest.raises(RuntimeError, match="Mul saved for its gradient was modified by an in-place operation"):
            loss.backward()
    x_t = torch.tensor([1.0, 2.0, 3.0])
    loss_t = (x_t * torch.ones(3, requires_grad=True)).sum()
    x_t += 10
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss_t.backward()
    layer = nn.Linear(3, 2)
    state = {k: v + 1 for k, v in layer.state_dict().items()}
    out = layer(nn.Tensor(np.ones((4, 3), np.float32), requires_grad=True)).sum()
    layer.load_state_dict(state)
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.backward()
    x = nn.Tensor(np.array([1.0, 2.0], np.float32))
    w = nn.Tensor(np.array([3.0, 4.0], np.float32), requires_grad=True)
    other = nn.Tensor(np.zeros(2, np.float32))
    loss = (x + w).sum()              # Add saves nothing: writing x afterwards does not change its gradient
    x += 1.0
    other += 1.0
    loss.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0])


def test_an_operand_is_saved_only_for_a_gradient_that_needs_it():
    """As torch: linear, matmul, * and / keep an operand only for a gradient that reads it, so writing weights in
    place (an optimizer step, load_state_dict) between the forward and backward of ops fed plain inputs is fine
    and gives torch's gradients; with an input that needs its gradient, the weight is kept, and both raise."""
    torch = torch_module()
    x_array, c_array = random_array((4, 3), np.float32, seed=5), random_array((4, 2), np.float32, seed=6) + 1.0
    u_array, w_array = random_array((3, 2), np.float32, seed=7), random_array((4, 2), np.float32, seed=8)
    for input_requires_grad in (False, True):
        layer, twin = nn.Linear(3, 2), torch.nn.Linear(3, 2)
        twin.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in layer.state_dict().items()})
        u, w = nn.Parameter(u_array.copy()), nn.Parameter(w_array.copy())
        u_t, w_t = torch.tensor(u_array, requires_grad=True), torch.tensor(w_array, requires_grad=True)
        x, c = nn.Tensor(x_array, requires_grad=input_requires_grad), nn.Tensor(c_array)
        x_t, c_t = torch.tensor(x_array, requires_grad=input_requires_grad), torch.tensor(c_array)
        loss = ((layer(x) + nn.functional.matmul(x, u)) * c + w * c + w / c).sum()
        loss_t = ((twin(x_t) + x_t @ u_t) * c_t + w_t * c_t + w_t / c_t).sum()
        with nn.no_grad(), torch.no_grad():
            for written in (layer.weight, u, w, twin.weight, u_t, w_t):
                written.mul_(2.0)
        if input_requires_grad:   # the weight was kept for x's gradient
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss_t.backward()
            with pytest.raises(RuntimeError, match="Linear saved for its gradient was modified by an in-place"):
                loss.backward()
            continue
        loss.backward()
        loss_t.backward()
        for ours, theirs in ((layer.weight, twin.weight), (layer.bias, twin.bias), (u, u_t), (w, w_t)):
            np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_integer_outputs_of_a_recorded_op_need_no_gradient_and_int_tensors_cannot_require_one():
    """torch's rule: max_pool2d's indices of an input that requires grad are a plain integer tensor, and an
    integer Tensor made with requires_grad=True is refused, by Tensor and Parameter alike."""
    x = nn.Tensor(random_array((1, 2, 4, 4), np.float32, seed=3), requires_grad=True)
    values, indices = nn.functional.max_pool2d(x, 2, return_indices=True)
    assert values.requires_grad and not indices.requires_grad and indices.is_leaf
    for make in (lambda: nn.Tensor(np.arange(3), requires_grad=True), lambda: nn.Parameter(np.arange(3))):
        with pytest.raises(RuntimeError, match="only Tensors of floating point dtype can require gradients"):
            make()
    assert not nn.Parameter(np.arange(3), requires_grad=False).requires_grad


def test_version_check_reaches_the_recurrent_layers_and_ignores_unrelated_writes():
    """A recurrent layer saves an object holding its arrays: a write to an unrelated tensor leaves its backward
    alone, a write to its weight after the forward raises (as torch)."""
    lstm = nn.LSTM(3, 4)
    out, _ = lstm(nn.Tensor(random_array((2, 1, 3), np.float32, seed=4)))
    other = nn.Tensor(np.zeros(2, np.float32))
    other += 1.0
    out.sum().backward()
    out, _ = lstm(nn.Tensor(random_array((2, 1, 3), np.float32, seed=5)))
    with nn.no_grad():
        lstm.weight_hh_l0.mul_(2.0)
    with pytest.raises(RuntimeError, match="LSTMLayer saved for its gradient was modified"):
        out.sum().backward()


def test_one_element_of_a_tensor_is_a_view_that_writes_through():
    torch = torch_module()
    ours, theirs = nn.Tensor(np.arange(3, dtype=np.float32)), torch.arange(3, dtype=torch.float32)
    for t in (ours, theirs):
        element = t[0]
        element += 100.0
        t[2].zero_()
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert ours[1].shape == () and ours.numpy().tolist() == [100.0, 1.0, 0.0]


def test_a_loss_scaled_by_a_number_backpropagates_a_0d_array():
    """NumPy's arithmetic on 0-d arrays gives scalars; autograd hands the next backward 0-d arrays (CTC's
    backward refused a NumPy scalar: (ctc_loss(...) / 4).backward() raised)."""
    torch = torch_module()
    log_probs = random_array((6, 2, 4), np.float64, seed=6)
    log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
    targets, input_lengths, target_lengths = np.array([[1, 2], [3, 3]]), np.array([6, 5]), np.array([2, 2])
    ours = nn.Tensor(log_probs.copy(), requires_grad=True)
    (nn.functional.ctc_loss(ours, targets, input_lengths, target_lengths) / 4 * 0.5).backward()
    theirs = torch.tensor(log_probs, requires_grad=True)
    (torch.nn.functional.ctc_loss(theirs, torch.tensor(targets), torch.tensor(input_lengths),
                                  torch.tensor(target_lengths)) / 4 * 0.5).backward()
    assert_close(ours.grad.numpy(), theirs.grad.numpy(), np.float64)


def test_a_0d_result_used_twice_backpropagates_a_0d_array():
    """Two gradients of a 0-d output are summed; NumPy makes that sum a scalar, which kernels' backward refuse."""
    torch = torch_module()
    ours = nn.Tensor(np.array([1.0, -2.0, 3.0], np.float32), requires_grad=True)
    s = nn.functional.relu(ours.sum())
    (s + s).backward()
    theirs = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    s_t = torch.relu(theirs.sum())
    (s_t + s_t).backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


def test_a_0d_integer_index_gives_a_view_as_torch():
    torch = torch_module()
    ours, theirs = nn.Tensor(np.arange(4, dtype=np.float32)), torch.arange(4, dtype=torch.float32)
    view, view_t = ours[nn.Tensor(np.array(2))], theirs[torch.tensor(2)]
    view += 10.0
    view_t += 10.0
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("int_dtype", [np.int32, np.int64, np.uint8, np.bool_])
@pytest.mark.parametrize("float_dtype", [np.float32, np.float64])
def test_integer_and_floating_tensors_promote_as_torch(int_dtype, float_dtype):
    torch = torch_module()
    a = np.array([1, 0, 1], dtype=int_dtype)
    b = np.array([0.5, -1.5, 2.0], dtype=float_dtype)
    for op in (lambda x, y: x + y, lambda x, y: y * x - y, lambda x, y: x * y):
        ours = op(nn.Tensor(a), nn.Tensor(b))
        theirs = op(torch.from_numpy(a), torch.from_numpy(b))
        assert ours.dtype == theirs.numpy().dtype
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
