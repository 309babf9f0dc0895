"""The flat=True layout of an optimizer's param group: parameters, gradients and state arrays packed into one
contiguous buffer each, so that a step is one update launch and clipping one norm and one scale (nn/optim.py)."""
import weakref

import numpy as np

from kernels import backend

from .autograd import note_in_place
from .tensor import Tensor


_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer", "square_avg", "grad_avg",
            "sum")   # per-parameter state arrays (Adam, SGD, RMSprop, Adagrad)


class _FlatGroup:
    """A param group's parameters, gradients and state arrays (Adam's moments, SGD's momentum buffers)
    packed into one contiguous buffer each (flat=True). Each parameter's `.data`, its gradient and its
    state arrays are views of one segment of those buffers; the gradient view is also the parameter's
    `_grad_slot`, into which backward writes the first gradient (Tensor._accumulate) instead of a new
    array. Whatever replaces one of these arrays (the optimizer's load_state_dict, .to(), a hand-set .grad) is noticed by
    identity: `holds` fails and the optimizer packs again."""

    def __init__(self, params, states, xp):
        dtype = params[0].data.dtype
        bounds = np.cumsum([0] + [p.data.size for p in params])
        self.params = list(params)
        self.param_ids = frozenset(id(p) for p in self.params)   # clip_grad_norm_ compares its list with it
        self.param_buffer = xp.empty(int(bounds[-1]), dtype)
        self.grad_buffer = xp.zeros(int(bounds[-1]), dtype)
        self.moments = {key: xp.empty(int(bounds[-1]), dtype) for key in _MOMENTS if states[0].get(key) is not None}
        self.views = []   # per parameter: (data view, gradient view, {moment name: view})
        owner = weakref.ref(self)
        for p, state, start, stop in zip(params, states, bounds[:-1], bounds[1:]):
            data = self.param_buffer[start:stop].reshape(p.data.shape)
            grad = self.grad_buffer[start:stop].reshape(p.data.shape)
            data[...] = p.data
            moments = {}
            for key, buffer in self.moments.items():
                moments[key] = buffer[start:stop].reshape(p.data.shape)
                moments[key][...] = state[key]
                state[key] = moments[key]
            note_in_place(p.data)   # packing is part of a step: the array left behind counts as stepped
            p.data = data
            p._grad_slot = (data, grad, owner)   # weak: a dropped optimizer frees its buffers
            self.views.append((data, grad, moments))
        self.step_count = None    # Adam: the group's first step count; all are equal (checked by pack)

    @classmethod
    def pack(cls, params, states, group, counts_must_agree=True):
        """Pack the group, or None where one launch cannot update it: parameters of different dtypes or
        devices, one listed twice, or (counts_must_agree: the update reads them) step counts that differ (read
        on the host: never while capturing)."""
        dtypes = {p.data.dtype for p in params}
        devices = {backend.device_of("optimizer", p.data) for p in params}
        if len(dtypes) != 1 or len(devices) != 1 or len({id(p) for p in params}) != len(params):
            return None
        if len({tuple(key for key in _MOMENTS if state.get(key) is not None) for state in states}) != 1:
            return None
        packed_step_count = None
        if group.step_counts is not None and counts_must_agree:   # Adam, Adagrad
            counts = backend.to_numpy(group.step_counts)
            if len(counts) != len(params) or not (counts == counts[0]).all():
                return None
            packed_step_count = group.step_counts[:1]
        packed = cls(params, states, backend.array_module(params[0].data))
        packed.step_count = packed_step_count
        return packed

    def holds(self, params, states):
        """Whether every parameter's data and moments are still this group's views."""
        if len(params) != len(self.params):
            return False
        for p, q, state, (data, _, moments) in zip(params, self.params, states, self.views):
            if p is not q or p.data is not data or len(moments) != sum(state.get(k) is not None for k in _MOMENTS):
                return False
            for key, view in moments.items():
                if state.get(key) is not view:
                    return False
        return True

    def take_gradients(self):
        """Make every gradient its view of grad_buffer (a gradient set by hand is copied in). False if one
        has another shape, dtype or array type: stepped parameter by parameter, it gets adam_update's error."""
        for p, (_, grad, _) in zip(self.params, self.views):
            given = p.grad.data
            if given is grad:
                continue
            if type(given) is not type(grad) or given.shape != grad.shape or given.dtype != grad.dtype:
                return False
            grad[...] = given
            p.grad = Tensor(grad)
        return True

    def gradients_in_place(self, params):
        """Whether `params` are exactly this group's parameters, each with its gradient in grad_buffer."""
        if len(params) != len(self.params) or {id(p) for p in params} != self.param_ids:
            return False
        return all(p.data is data and p.grad is not None and p.grad.data is grad
                   for p, (data, grad, _) in zip(self.params, self.views))
