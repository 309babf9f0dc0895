"""A reviewer's findings on nn.Tensor against torch 2.13: negative permute dims, += on a view, reductions over
dim=(), operands that are lists, backward's gradient argument, type promotion and gradient dtypes, shape checks,
0-d stacks, the 1-D dot product, Python conversions, sqrt/rsqrt/abs at their edges and bitwise ops. Each compares
values, dtypes and gradients with torch's, or errors with the ones torch raises."""
import numpy as np
import pytest

import nn
from tests.oracle import random_array, torch_module


def _both(fn, *arrays):
    """fn on our Tensors and on torch's (the floating ones requiring grad): the same values and dtype, and the same
    gradients (values and dtypes) of sum(out * w) for a random w."""
    torch = torch_module()
    ours = [nn.Tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=a.dtype.kind == "f") for a in arrays]
    with np.errstate(all="ignore"):
        out, expected = fn(ours), fn(theirs)
    assert out.shape == tuple(expected.shape)
    assert str(out.dtype) == str(expected.dtype).replace("torch.", "")
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-12, equal_nan=True)
    if not expected.requires_grad:
        return
    w = random_array(out.shape, np.float64, seed=5)
    with np.errstate(all="ignore"):
        (out * nn.Tensor(w.astype(out.dtype))).sum().backward()
    (expected * torch.tensor(w, dtype=expected.dtype)).sum().backward()
    for index, (mine, reference) in enumerate(zip(ours, theirs)):
        if reference.grad is None:
            assert mine.grad is None
            continue
        assert mine.grad.dtype == reference.grad.numpy().dtype, f"gradient {index} dtype"
        np.testing.assert_allclose(mine.grad.numpy(), reference.grad.numpy(), rtol=1e-6, equal_nan=True,
                                   err_msg=f"gradient {index}")


def _lib(tensors):
    """nn or torch, whichever `tensors` come from."""
    return nn if isinstance(tensors[0], nn.Tensor) else torch_module()


# ---- 1. permute with negative dims -------------------------------------------------------------------------
@pytest.mark.parametrize("dims", [(-1, 0, 1), (2, -3, -2), (-1, -2, -3), (0, 2, 1)])
def test_permute_with_negative_dims_matches_torch_values_and_gradients(dims):
    _both(lambda t: t[0].permute(*dims) * 2, random_array((2, 3, 4), np.float64))
    _both(lambda t: t[0].transpose(-1, 0), random_array((2, 3, 4), np.float64))


@pytest.mark.parametrize("dims, error", [((0, 0, 1), ValueError), ((0, 1, 3), IndexError), ((0, 1), ValueError)])
def test_permute_refuses_repeated_out_of_range_and_missing_dims(dims, error):
    with pytest.raises(error, match="permute"):
        nn.Tensor(np.zeros((2, 3, 4))).permute(*dims)


# ---- 2. x += y on a view -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make_view", ["slice", "reshape", "detach"])   # (torch refuses it on split's views)
def test_augmented_assignment_on_a_view_under_autograd_writes_through_as_torch(make_view):
    """v op= y on a view v of z under autograd: z gets torch's values (written through the view), and v torch's
    values and gradients (a recorded out-of-place op on a copy of v's values)."""
    torch = torch_module()
    views = {"slice": lambda z: z[1:], "reshape": lambda z: z.reshape(2, 3)[:, 1:], "detach": lambda z: z.detach()}
    results = []
    for lib in ("nn", "torch"):
        make = (lambda a: nn.Tensor(a.copy(), requires_grad=True)) if lib == "nn" else \
            (lambda a: torch.tensor(a, requires_grad=True))
        x, w = make(np.arange(1.0, 7.0)), make(np.full(6, 2.0))
        z = x * w
        view = views[make_view](z)
        view *= w[:1].sum() * 5
        view += w[:1].sum()
        (view * view).sum().backward()
        values = z.numpy() if lib == "nn" else z.detach().numpy()
        results.append((values, w.grad.numpy(), None if x.grad is None else x.grad.numpy()))
    for mine, reference in zip(*results, strict=True):
        if reference is None:
            assert mine is None or not mine.any()
        else:
            np.testing.assert_allclose(mine, reference, rtol=1e-12)


def test_a_tensor_written_through_a_view_refuses_recorded_use():
    """z's recorded history does not know of a write through its view, so a gradient through z would miss it:
    a recorded op on z raises by name; its values are torch's."""
    x = nn.Tensor(np.arange(1.0, 7.0), requires_grad=True)
    z = x * 2
    view = z[1:]
    view *= 3
    np.testing.assert_array_equal(z.numpy(), [2, 12, 18, 24, 30, 36])
    with pytest.raises(RuntimeError, match=r"Mul: an input was changed in place through a view of it \(\*= on a"):
        z * x


def test_augmented_assignment_on_a_view_of_a_parameter_raises_torchs_leaf_error():
    weight = nn.Parameter(np.ones((2, 3), np.float32))
    with pytest.raises(RuntimeError, match=r"\+=: a view of a leaf Variable that requires grad"):
        row = weight.reshape(6)[:3]
        row += 1.0


def test_augmented_assignment_on_a_non_view_or_a_copy_still_matches_torch():
    """h += y on a tensor of its own makes a new tensor (torch records it in place: the same values and
    gradients); a mask's copy is not a view (in torch neither); without autograd a view is written through."""
    torch = torch_module()
    array = random_array((3,), np.float64, seed=2)

    def accumulate(x, mask):
        h = x * 3.0
        h += x
        picked = x[mask]
        picked *= 2.0
        return h.sum() + picked.sum()

    mask = np.array([True, False, True])
    ours, theirs = nn.Tensor(array.copy(), requires_grad=True), torch.tensor(array, requires_grad=True)
    accumulate(ours, nn.Tensor(mask)).backward()
    accumulate(theirs, torch.tensor(mask)).backward()
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy())
    z, z_torch = nn.Tensor(np.zeros(3)), torch.zeros(3, dtype=torch.float64)
    for tensor, lib in ((z, nn), (z_torch, torch)):
        view = tensor[:2]
        view += lib.tensor(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(z.numpy(), z_torch.numpy())


# ---- 3. reductions over dim=() ------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sum", "mean", "var", "std", "norm"])
@pytest.mark.parametrize("dim", [(), []])
def test_reductions_over_an_empty_dim_tuple_reduce_every_dim_as_torch(method, dim):
    # torch's var and std over dim=() have an infinite gradient (their backward takes N = 1): torch's gradient
    # of dim=None, which they equal forward, is the one compared
    torch_dim = None if method in ("var", "std") else dim
    array = random_array((3, 4), np.float64)
    assert getattr(nn.Tensor(array), method)(dim=dim).item() == \
        pytest.approx(getattr(torch_module().tensor(array), method)(dim=dim).item(), rel=1e-12)
    for keepdim in (False, True):
        _both(lambda t, keepdim=keepdim: getattr(t[0], method)(dim=dim if isinstance(t[0], nn.Tensor) else torch_dim,
                                                               keepdim=keepdim),
              random_array((3, 4), np.float64))


def test_reductions_check_their_dims_by_name():
    x = nn.Tensor(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="sum: dim 2 is out of range"):
        x.sum(2)
    with pytest.raises(ValueError, match="mean: a dim appears more than once"):
        x.mean((0, -2))
    _both(lambda t: t[0].sum(0), np.array(1.5))   # a 0-d tensor takes dim 0, as torch


# ---- 4. an operand that is a list --------------------------------------------------------------------------
@pytest.mark.parametrize("other", [[0.5, 0.5, 0.5], (1, 2, 3)])
def test_a_list_operand_is_refused_as_torch_instead_of_cast_to_the_tensors_dtype(other):
    x = nn.Tensor(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \+: 'Tensor' and '(list|tuple)'"):
        x + other
    with pytest.raises(TypeError, match=r"for \*: 'Tensor' and '(list|tuple)'"):
        other * x


# ---- 5. and 6. backward's gradient argument, gradient dtypes -------------------------------------------------
def test_backward_checks_the_gradients_shape_as_torch():
    x = nn.Tensor(np.ones(1), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"backward: Mismatch in shape: the gradient has shape \(4,\), but the "
                                           r"tensor has shape \(1,\)"):
        (x * 3).backward(nn.Tensor(np.ones(4)))
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        (x * 3).sum().backward(np.ones(1))
    assert x.grad is None


def test_gradients_keep_each_inputs_dtype_as_torch():
    """A float32 leaf gets a float32 .grad (torch casts each gradient to its input's dtype), also from a float64
    gradient given to backward; an optimizer can then step it."""
    torch = torch_module()
    for lib in (nn, torch):
        p = lib.tensor(np.ones(3, np.float32), requires_grad=True)
        (p * lib.tensor(np.full(3, 0.5))).sum().backward()   # float32 times float64: float64
        assert str(p.grad.dtype).endswith("float32")
        lib.optim.SGD([p], lr=0.1).step()
        np.testing.assert_allclose(p.detach().numpy(), 0.95)
        q = lib.tensor(np.ones(3, np.float32), requires_grad=True)
        (q * 2).backward(lib.tensor(np.ones(3)))
        assert str(q.grad.dtype).endswith("float32")
        np.testing.assert_array_equal(q.grad.numpy(), 2.0)


# ---- 6. type promotion -------------------------------------------------------------------------------------
PROMOTIONS = [   # (name, first, second): each pair combined by *, ==, ** where they apply
    ("float32[3], 0-d float64", np.ones(3, np.float32), np.array(2.0)),
    ("0-d float64, float32[3]", np.array(2.0), np.ones(3, np.float32)),
    ("int32[3], 0-d int64", np.array([1, 2, 3], np.int32), np.array(3)),
    ("int32[3], 0-d float64", np.array([1, 2, 3], np.int32), np.array(0.5)),
    ("bool[3], 0-d int8", np.array([True, False, True]), np.array(3, np.int8)),
    ("uint8[3], 0-d int8", np.array([1, 2, 3], np.uint8), np.array(-1, np.int8)),
    ("0-d float32, 0-d float64", np.array(0.1, np.float32), np.array(0.1)),
    ("float32[3], float64[3]", np.full(3, 0.1, np.float32), np.full(3, 0.1)),
    ("int64[3], float16[3]", np.array([1, 2, 3]), np.ones(3, np.float16)),
]


@pytest.mark.parametrize("name, first, second", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_tensor_operands_promote_as_torch_result_type(name, first, second):
    torch = torch_module()
    expected = torch.result_type(torch.tensor(first), torch.tensor(second))
    assert str((nn.Tensor(first) * nn.Tensor(second)).dtype) == str(expected).replace("torch.", "")
    if first.dtype.kind == "f" and second.dtype.kind == "f" and np.float16 not in (first.dtype, second.dtype):
        _both(lambda t: t[0] * t[1] + t[1], first, second)


@pytest.mark.parametrize("name, first, second", PROMOTIONS, ids=[p[0] for p in PROMOTIONS])
def test_comparisons_of_tensors_of_different_dtypes_as_torch(name, first, second):
    """float32 [0.1] == 0-d float64 0.1 compares in float32 (true), as torch; float32[3] == float64[3] in float64."""
    torch = torch_module()
    for compare in (lambda a, b: a == b, lambda a, b: a < b, lambda a, b: a >= b):
        ours = compare(nn.Tensor(first), nn.Tensor(second))
        theirs = compare(torch.tensor(first), torch.tensor(second))
        assert ours.tolist() == theirs.tolist()


def test_cat_stack_and_pow_of_mixed_dtypes_as_torch():
    torch = torch_module()
    integers, floats = np.array([1, 2]), np.array([0.5, 1.5], np.float32)
    for join in (lambda lib, a, b: lib.cat([a, b]), lambda lib, a, b: lib.stack([a, b]),
                 lambda lib, a, b: a ** b, lambda lib, a, b: b ** a):
        ours = join(nn, nn.Tensor(integers), nn.Tensor(floats))
        theirs = join(torch, torch.tensor(integers), torch.tensor(floats))
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        np.testing.assert_allclose(ours.numpy(), theirs.numpy())
    # a float32 and a float64 input: the result float64, each gradient in its input's dtype
    _both(lambda t: _lib(t).cat([t[0], t[1]]), random_array((2,), np.float32), random_array((3,), np.float64))
    _both(lambda t: _lib(t).stack([t[0], t[1]], 1), random_array((2,), np.float64), random_array((2,), np.float32))


# ---- 7. shapes where torch raises or keeps dims ------------------------------------------------------------
def test_shape_methods_check_dims_as_torch():
    x = nn.Tensor(np.zeros((3, 4, 5)))
    with pytest.raises(IndexError, match=r"unsqueeze: dim 5 is out of range for a tensor of 3 dims .*\[-4, 3\]"):
        x.unsqueeze(5)
    assert x.unsqueeze(3).shape == (3, 4, 5, 1) and x.unsqueeze(-4).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 0"):
        x.flatten(2, 0)
    with pytest.raises(IndexError, match="flatten: dim 3 is out of range"):
        x.flatten(3)
    assert x.flatten(1).shape == (3, 20) and nn.Tensor(np.array(1.0)).flatten().shape == (1,)
    assert nn.Tensor(np.zeros((1, 3, 1))).squeeze().shape == (3,)
    assert nn.Tensor(np.zeros((1, 3, 1))).squeeze((0, 1)).shape == (3, 1)
    for shape in ((2, 3), (4,), ()):
        array = random_array(shape, np.float64, seed=1)
        for name in ("argmax", "argmin"):
            for dim in (None, 0):
                ours = getattr(nn.Tensor(array), name)(dim, keepdim=True)
                theirs = getattr(torch_module().tensor(array), name)(dim, keepdim=True)
                assert ours.shape == tuple(theirs.shape) and ours.tolist() == theirs.tolist()


def test_zero_dim_tensors_keep_their_shape_through_expand_permute_and_transpose():
    for fn in (lambda t: t[0].expand(()), lambda t: t[0].expand(2, 3) * 2, lambda t: t[0].permute(()),
               lambda t: t[0].transpose(0, -1), lambda t: t[0].t()):
        _both(fn, np.array(1.5))


# ---- 8. stack of 0-d tensors --------------------------------------------------------------------------------
def test_stack_of_zero_dim_losses_backpropagates_as_torch():
    _both(lambda t: _lib(t).stack([t[0].sum(), (t[0] * t[0]).sum(), t[0][1]]), np.array([1.0, 2.0, 3.0]))
    _both(lambda t: _lib(t).stack([t[0], t[0] * 2], -1), random_array((2, 3), np.float64))


# ---- 9. 1-D @ 1-D -----------------------------------------------------------------------------------------
def test_one_dim_matmul_is_the_zero_dim_dot_product_as_torch():
    _both(lambda t: t[0] @ t[1], random_array((5,), np.float64, seed=1), random_array((5,), np.float64, seed=2))
    with pytest.raises(ValueError, match=r"matmul: 1-D operands need the same length, got shapes \(2,\) and \(3,\)"):
        nn.Tensor(np.zeros(2)) @ nn.Tensor(np.zeros(3))


# ---- 10. Python and NumPy conversions -------------------------------------------------------------------------
def test_float_int_index_and_array_conversions_as_torch():
    torch = torch_module()
    for value in (np.array(3), np.array(2.7), np.array([4]), np.array(True)):
        ours, theirs = nn.Tensor(value), torch.tensor(value)
        assert float(ours) == float(theirs) and int(ours) == int(theirs)
        assert type(float(ours)) is float and type(int(ours)) is int
    items = [10, 20, 30]
    for value in (np.array(1), np.array([2]), np.array(True)):
        assert items[nn.Tensor(value)] == items[torch.tensor(value)]
    assert items[nn.Tensor(np.arange(4.0)).argmax() - 1] == 30
    for value in (np.array(1.0), np.array([1, 2])):
        with pytest.raises(TypeError, match="__index__: only integer tensors of a single element"):
            items[nn.Tensor(value)]
    with pytest.raises(ValueError, match="more than one element"):
        int(nn.Tensor(np.array([1, 2])))
    array = random_array((2, 3), np.float32)
    converted = np.asarray(nn.Tensor(array))
    assert converted.dtype == np.float32 and np.array_equal(converted, array)
    assert np.asarray(nn.Tensor(array), dtype=np.float64).dtype == np.float64
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        np.asarray(nn.Tensor(array, requires_grad=True))


# ---- 11. sqrt, rsqrt and abs at their edges; bitwise ops ---------------------------------------------------
@pytest.mark.parametrize("method", ["sqrt", "rsqrt", "abs"])
def test_sqrt_rsqrt_and_abs_at_zero_infinity_and_nan_as_torch(method):
    _both(lambda t: getattr(t[0], method)(), np.array([-0.0, 0.0, -np.inf, np.inf, np.nan, -1.0, 4.0]))
    _both(lambda t: getattr(t[0], method)(), np.array([0.0, 0.25, 4.0], np.float32))
    _both(lambda t: getattr(t[0], method)(), np.array([1, 4]))   # integers: float32


def test_bitwise_and_or_xor_of_bool_and_integer_tensors_as_torch():
    torch = torch_module()
    x = random_array((5,), np.float64, seed=4)
    ints, other = np.array([6, 3, -2], np.int32), np.array([3, 5, 7])
    for fn in (lambda lib, t, i, j: (t > 0) & (t < 0.5), lambda lib, t, i, j: (t > 0) | (t < -0.5),
               lambda lib, t, i, j: (t > 0) ^ True, lambda lib, t, i, j: i & j, lambda lib, t, i, j: i | 8,
               lambda lib, t, i, j: 1 ^ i, lambda lib, t, i, j: (i > 0) & i):
        ours = fn(nn, nn.Tensor(x), nn.Tensor(ints), nn.Tensor(other))
        theirs = fn(torch, torch.tensor(x), torch.tensor(ints), torch.tensor(other))
        assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
        assert ours.tolist() == theirs.tolist()
    with pytest.raises(TypeError, match="&: bitwise ops take bool or integer tensors"):
        nn.Tensor(x) & nn.Tensor(x)
