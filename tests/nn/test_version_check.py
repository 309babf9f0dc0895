"""autograd's version check against torch's version counters, for the writes that are not Tensor in-place ops:
optimizer steps, zero_grad(set_to_none=False), AveragedModel.update_parameters, and the arrays the losses
keep besides their inputs (class weights, targets). Each case checks that torch raises there too."""
import numpy as np
import pytest

import nn
from nn import autograd, swa_utils
from tests.oracle import assert_close, random_array, torch_module

OURS = "modified by an in-place operation"
THEIRS = "modified by an inplace operation"

OPTIMIZERS = {
    "SGD": dict(lr=0.05, momentum=0.9, weight_decay=0.01),
    "Adam": dict(lr=0.02, weight_decay=0.01),
    "AdamW": dict(lr=0.02),
}


def _models():
    """Linear-Tanh-Linear in float64, ours and torch's with the same weights: the second Linear's input
    requires grad, so torch saves its weight too (torch's Linear saves the weight only then)."""
    torch = torch_module()
    ours = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    theirs = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():
        for mine, reference in zip(ours.parameters(), theirs.parameters()):
            reference.copy_(torch.from_numpy(mine.data.copy()))
    return ours, theirs


def _losses(ours, theirs, seed):
    torch = torch_module()
    x = random_array((5, 3), np.float64, seed=seed)
    return (ours(nn.Tensor(x)) ** 2).sum(), (theirs(torch.from_numpy(x)) ** 2).sum()


@pytest.fixture
def checks(monkeypatch):
    """How many times backward ran the version check (a usual loop must never run it)."""
    count = [0]
    check = autograd._check_saved_arrays_unwritten

    def counted(ctx):
        count[0] += 1
        check(ctx)

    monkeypatch.setattr(autograd, "_check_saved_arrays_unwritten", counted)
    return count


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_step_between_a_retained_backward_and_the_next_raises_as_in_torch(name, flat, checks):
    """A usual loop (zero_grad, forward, backward, step) runs no check and gives torch's weights; a step between
    backward(retain_graph=True) and a second backward of the same graph raises in both (the step wrote the
    weights that graph saved); a forward after that step backpropagates without error, with torch's gradients.
    (flat=True steps parameter by parameter on the CPU path; tests/simulator covers the flat buffer.)"""
    torch = torch_module()
    ours, theirs = _models()
    optimizer = getattr(nn.optim, name)(ours.parameters(), flat=flat, **OPTIMIZERS[name])
    reference = getattr(torch.optim, name)(theirs.parameters(), **OPTIMIZERS[name])
    for step in range(3):
        for opt, loss in zip((optimizer, reference), _losses(ours, theirs, seed=step)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert checks[0] == 0
    for mine, expected in zip(ours.parameters(), theirs.parameters()):
        assert_close(mine.data, expected.detach().numpy(), np.float64, name="weight")

    loss, loss_t = _losses(ours, theirs, seed=10)
    for graph, opt in ((loss, optimizer), (loss_t, reference)):
        opt.zero_grad()
        graph.backward(retain_graph=True)
        opt.step()
    with pytest.raises(RuntimeError, match=THEIRS):
        loss_t.backward()
    with pytest.raises(RuntimeError, match=f"_Linear saved for its gradient was {OURS}"):
        loss.backward()

    loss, loss_t = _losses(ours, theirs, seed=11)
    for graph, opt in ((loss, optimizer), (loss_t, reference)):
        opt.zero_grad()
        graph.backward()
    for mine, expected in zip(ours.parameters(), theirs.parameters()):
        assert_close(mine.grad.data, expected.grad.numpy(), np.float64, name="gradient")


def test_zero_grad_keeping_the_gradients_counts_as_a_write():
    """zero_grad(set_to_none=False) zeroes the gradients in place: a graph that saved one raises, as torch's."""
    torch = torch_module()
    w, w_t = nn.Parameter(np.array([1.0, 2.0, 3.0])), torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    optimizer, reference = nn.optim.SGD([w], lr=0.1), torch.optim.SGD([w_t], lr=0.1)
    (w * 2.0).sum().backward()
    (w_t * 2.0).sum().backward()
    loss = (nn.Tensor(np.ones(3), requires_grad=True) * w.grad).sum()
    loss_t = (torch.ones(3, requires_grad=True) * w_t.grad).sum()
    optimizer.zero_grad(set_to_none=False)
    reference.zero_grad(set_to_none=False)
    with pytest.raises(RuntimeError, match=THEIRS):
        loss_t.backward()
    with pytest.raises(RuntimeError, match=OURS):
        loss.backward()


def test_module_zero_grad_keeping_the_gradients_counts_as_a_write():
    """Module.zero_grad(set_to_none=False) too, as torch's."""
    torch = torch_module()
    layer, twin = nn.Linear(3, 1).double(), torch.nn.Linear(3, 1).double()
    for model, make in ((layer, lambda a: nn.Tensor(a, requires_grad=True)),
                        (twin, lambda a: torch.tensor(a, requires_grad=True))):
        model(make(np.ones((2, 3)))).sum().backward()
        loss = (make(np.ones((1, 3))) * model.weight.grad).sum()
        model.zero_grad(set_to_none=False)
        with pytest.raises(RuntimeError, match=THEIRS if model is twin else OURS):
            loss.backward()


def test_averaging_into_a_saved_weight_raises_as_in_torch():
    """AveragedModel.update_parameters writes the averaged copy in place: a graph through that copy recorded
    before the update raises, in torch as here."""
    torch = torch_module()
    from torch.optim.swa_utils import AveragedModel
    x = random_array((4, 3), np.float64, seed=3)
    model, model_t = nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    averaged, averaged_t = swa_utils.AveragedModel(model), AveragedModel(model_t)
    averaged.update_parameters(model)
    averaged_t.update_parameters(model_t)
    out = (averaged(nn.Tensor(x, requires_grad=True)) ** 2).sum()
    out_t = (averaged_t(torch.tensor(x, requires_grad=True)) ** 2).sum()
    averaged.update_parameters(model)
    averaged_t.update_parameters(model_t)
    with pytest.raises(RuntimeError, match=THEIRS):
        out_t.backward()
    with pytest.raises(RuntimeError, match=f"_Linear saved for its gradient was {OURS}"):
        out.backward()


def _loss_cases(module):
    """{name: (forward, write)} for each array a loss keeps besides its differentiated input: torch saves it, so
    writing it in place between forward and backward raises. (cross_entropy's target was saved already.)"""
    torch = torch_module()
    ours = module is nn
    F = nn.functional if ours else torch.nn.functional

    def tensor(array, requires_grad=False):
        return nn.Tensor(array.copy(), requires_grad=requires_grad) if ours \
            else torch.tensor(array.copy(), requires_grad=requires_grad)

    logits = tensor(random_array((4, 3), np.float64, seed=1), requires_grad=True)
    classes = np.array([0, 2, 1, 2])
    weight, target = tensor(np.array([0.5, 1.5, 2.0])), tensor(classes)
    bce_weight = tensor(random_array((4, 3), np.float64, seed=2, low=0.5))
    pos_weight = tensor(np.array([2.0, 0.5, 1.0]))
    probabilities = random_array((4, 3), np.float64, seed=4, low=0.0)
    log_probs = random_array((6, 2, 4), np.float64, seed=5)
    log_probs = tensor(log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True)), requires_grad=True)
    ctc_targets = tensor(np.array([[1, 2], [3, 3]]))
    lengths = (np.array([6, 5]), np.array([2, 2]))
    return {
        "cross_entropy weight": (lambda: F.cross_entropy(logits, tensor(classes), weight=weight),
                                 lambda: weight.mul_(2.0)),
        "nll_loss weight": (lambda: F.nll_loss(F.log_softmax(logits, 1), tensor(classes), weight=weight),
                            lambda: weight.mul_(2.0)),
        "nll_loss target": (lambda: F.nll_loss(F.log_softmax(logits, 1), target), lambda: target.fill_(1)),
        "bce weight": (lambda: F.binary_cross_entropy_with_logits(logits, tensor(probabilities), weight=bce_weight),
                       lambda: bce_weight.mul_(2.0)),
        "bce pos_weight": (lambda: F.binary_cross_entropy_with_logits(logits, tensor(probabilities),
                                                                      pos_weight=pos_weight),
                           lambda: pos_weight.mul_(2.0)),
        "ctc targets": (lambda: F.ctc_loss(log_probs, ctc_targets, *(tensor(a) for a in lengths)),
                        lambda: ctc_targets.fill_(1)),
    }


@pytest.mark.parametrize("case", ["cross_entropy weight", "nll_loss weight", "nll_loss target", "bce weight",
                                  "bce pos_weight", "ctc targets"])
def test_losses_check_their_weights_and_targets_as_torch(case):
    """torch's cross_entropy / nll_loss save the class weight and the target, binary_cross_entropy_with_logits
    its weight and pos_weight, ctc_loss its targets: an in-place write to one between forward and backward
    raises there, and here."""
    for module in (nn, torch_module()):
        forward, write = _loss_cases(module)[case]
        loss = forward()
        write()
        with pytest.raises(RuntimeError, match=THEIRS if module is not nn else OURS):
            loss.backward()


def test_gradient_accumulation_into_grad_counts_as_an_in_place_write():
    """A second backward adds into .grad in place, as torch's: a graph that saved that .grad array (x * w.grad)
    then raises at its backward, as torch's does, instead of using the accumulated values."""
    import torch
    for lib in ("ours", "torch"):
        if lib == "ours":
            w, x = nn.Parameter(np.ones(3)), nn.Tensor(np.ones(3), requires_grad=True)
        else:
            w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
            x = torch.ones(3, dtype=torch.float64, requires_grad=True)
        (w * w).sum().backward()
        y = (x * w.grad).sum()
        (w * w).sum().backward()
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            y.backward()


@pytest.mark.parametrize("clip", ["norm", "value"])
def test_clipping_gradients_counts_as_an_in_place_write(clip):
    """clip_grad_norm_'s scaling and clip_grad_value_'s clamp write the gradients in place, as torch's: a graph
    that saved a gradient array raises at its backward, as torch's does."""
    import torch
    for lib in ("ours", "torch"):
        if lib == "ours":
            w, x, utils = nn.Parameter(np.full(3, 4.0)), nn.Tensor(np.ones(3), requires_grad=True), nn.utils
        else:
            w = torch.nn.Parameter(torch.full((3,), 4.0, dtype=torch.float64))
            x, utils = torch.ones(3, dtype=torch.float64, requires_grad=True), torch.nn.utils
        (w * w).sum().backward()
        y = (x * w.grad).sum()
        if clip == "norm":
            utils.clip_grad_norm_([w], 1.0)
        else:
            utils.clip_grad_value_([w], 1.0)
        with pytest.raises(RuntimeError, match="modified by an in-?place operation"):
            y.backward()


def test_accumulating_into_a_grad_a_node_of_the_same_backward_saved_raises_as_in_torch():
    """The backward adds into w.grad (made by an earlier backward) before the Mul that saved it runs: torch raises,
    and so does ours (a .grad made before this backward is noted at once; one it made itself needs no note)."""
    w = nn.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    x = nn.Tensor(np.array([3.0, 4.0]), requires_grad=True)
    (w * 5).sum().backward()
    z = (x * w.grad).sum()                # saves w.grad
    loss = (w * 3).sum() + z              # w's accumulation runs before z's Mul in this backward
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        loss.backward()
