"""Pooling in NumPy, the reference for kernels/cuda/pool.py. Arrays are NCHW, geometry pre-checked.

Windows are read tap by tap: for each kernel tap (i, j) one strided view of the padded input holds
that tap of every window, so the Python loop runs over kh*kw taps, never over pixels. Adaptive
pooling is separable, so it is two small matrix products (rows, then columns). Numba-CPU loops where
NumPy was slow: max pooling's 2x2 kernel with stride_w 1 or 2 (one pass instead of ~5 per tap: 2-3x),
and its backward, a loop per plane (NumPy's scatter, a bincount over flat indices, was 2-3x slower).
"""
import numpy as np
from numba import njit


def _padded(x, padding, out_hw, kernel, stride, dilation, fill):
    """x inside a border of `fill`: `padding` on the top/left, enough on the bottom/right for the
    last window (ceil_mode may take it past the right padding)."""
    n, c, height, width = x.shape
    need_h = (out_hw[0] - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1
    need_w = (out_hw[1] - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1
    rows = max(need_h, padding[0] + height)
    cols = max(need_w, padding[1] + width)
    if (rows, cols) == (height, width) and padding == (0, 0):
        return x  # no border needed: the taps view x itself (only the backward writes, into its own zeros)
    padded = np.full((n, c, rows, cols), fill, dtype=x.dtype)
    padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width] = x
    return padded


def _taps(padded, kernel, stride, dilation, out_hw):
    """Yield (i, j, view): view[n, c, oh, ow] is tap (i, j) of window (oh, ow); views alias `padded`."""
    for i in range(kernel[0]):
        top = i * dilation[0]
        rows = slice(top, top + (out_hw[0] - 1) * stride[0] + 1, stride[0])
        for j in range(kernel[1]):
            left = j * dilation[1]
            cols = slice(left, left + (out_hw[1] - 1) * stride[1] + 1, stride[1])
            yield i, j, padded[:, :, rows, cols]


def _window_starts(out_size, stride, padding):
    return np.arange(out_size, dtype=np.int64) * stride - padding


def max_pool2d(x, kernel, stride, padding, dilation, out_hw, return_indices=False):
    """(y, indices or None). A later tap replaces the running max only when strictly larger (or NaN),
    so ties keep the first maximum in row-major order, as PyTorch does."""
    if tuple(kernel) == (2, 2) and stride[1] in (1, 2) and x.size:
        return _max_pool2d_2x2(x, stride, padding, dilation, out_hw, return_indices)
    padded = _padded(x, padding, out_hw, kernel, stride, dilation, -np.inf)
    out_shape = x.shape[:2] + tuple(out_hw)
    width = x.shape[3]
    if not return_indices:
        y = np.full(out_shape, -np.inf, dtype=x.dtype)
        for _, _, view in _taps(padded, kernel, stride, dilation, out_hw):
            np.maximum(y, view, out=y)  # propagates NaN like PyTorch
        return y, None
    row_starts = _window_starts(out_hw[0], stride[0], padding[0])
    col_starts = _window_starts(out_hw[1], stride[1], padding[1])

    def first_inside(starts, step):
        # the first tap that is not in the top/left padding (PyTorch's initial index)
        return np.where(starts < 0, starts + (-starts + step - 1) // step * step, starts)

    first = first_inside(row_starts, dilation[0])[:, None] * width + first_inside(col_starts, dilation[1])[None, :]
    y = np.full(out_shape, -np.inf, dtype=x.dtype)
    # 1 + the winning tap per output (0: none won, keep `first`). Taps come in increasing order, so
    # a running maximum records the latest winner: arithmetic, no data-dependent masked writes.
    tap_count = kernel[0] * kernel[1]
    winner = np.zeros(out_shape, dtype=np.int8 if tap_count < 127 else np.int64)
    take = np.empty(out_shape, dtype=bool)
    has_nan = bool(np.isnan(x).any())
    for i, j, view in _taps(padded, kernel, stride, dilation, out_hw):
        np.greater(view, y, out=take)
        if has_nan:
            take |= np.isnan(view)
        np.maximum(y, view, out=y)  # same value as the strict-or-NaN update: NaN propagates
        np.maximum(winner, take * winner.dtype.type(i * kernel[1] + j + 1), out=winner)
    # flat index = window origin + the winning tap's offset, read from a table of tap offsets
    taps = np.arange(tap_count)
    offsets = np.concatenate(([0], (taps // kernel[1]) * dilation[0] * width + (taps % kernel[1]) * dilation[1]))
    indices = np.take(offsets, winner)
    indices += row_starts[:, None] * width + col_starts[None, :]
    none_won = winner == 0
    if none_won.any():  # windows of only -inf (or only padding): PyTorch's first tap inside
        indices[none_won] = np.broadcast_to(first, out_shape)[none_won]
    return y, indices


def _max_pool2d_2x2(x, stride, padding, dilation, out_hw, return_indices):
    """The 2x2 kernel (most CNNs', the CRNN's) with stride_w 1 or 2: one Numba pass, 2-3x faster than the taps."""
    n, c, height, width = x.shape
    planes = np.ascontiguousarray(x).reshape(n * c, height * width)
    y = np.empty((n * c,) + tuple(out_hw), dtype=x.dtype)
    indices = np.empty(y.shape, dtype=np.int64)
    _max_pool_2x2_planes(planes, height, width, y, indices, x.dtype.type(-np.inf), *stride, *padding, *dilation)
    out_shape = (n, c) + tuple(out_hw)
    return y.reshape(out_shape), (indices.reshape(out_shape) if return_indices else None)


@njit(cache=True, error_model="numpy", inline="always")
def _window_2x2(plane, width, height, lowest, top, left, dilation_h, dilation_w):
    """One window clipped to the input (a border one): strictly larger or NaN wins; PyTorch's first index."""
    row_first = top if top >= 0 else top + dilation_h
    col_first = left if left >= 0 else left + dilation_w
    best = lowest
    where = row_first * width + col_first
    for i in range(2):
        row = top + i * dilation_h
        if 0 <= row < height:
            for j in range(2):
                col = left + j * dilation_w
                if 0 <= col < width:
                    value = plane[row * width + col]
                    if value > best or value != value:
                        best = value
                        where = row * width + col
    return best, where


# Windows are taken BLOCK at a time: a loop with a constant trip count and a constant stride vectorises
# (strided loads, selects), one with a run-time count did not (0.25 ms against 0.06 on the CRNN's first pool).
BLOCK = 16


@njit(cache=True, error_model="numpy", inline="always")
def _interior_2x2(plane, y_row, index_row, first, step, row_step, dilation_w):
    """BLOCK windows wholly inside the input, window k's taps at first + k*step + (0 | dilation_w) + (0 | row_step):
    the first of the largest (or the last NaN) wins, as in _window_2x2."""
    top_left = plane[first:]
    top_right = plane[first + dilation_w:]
    bottom_left = plane[first + row_step:]
    bottom_right = plane[first + row_step + dilation_w:]
    for k in range(BLOCK):
        at = k * step
        best = top_left[at]
        tap = 0
        value = top_right[at]
        take = (value > best) | (value != value)
        best = value if take else best
        tap = 1 if take else tap
        value = bottom_left[at]
        take = (value > best) | (value != value)
        best = value if take else best
        tap = 2 if take else tap
        value = bottom_right[at]
        take = (value > best) | (value != value)
        best = value if take else best
        tap = 3 if take else tap
        y_row[k] = best
        index_row[k] = first + at + (row_step if tap >= 2 else 0) + (dilation_w if tap % 2 else 0)


@njit(cache=True, error_model="numpy")
def _max_pool_2x2_planes(x, height, width, y, indices, lowest, stride_h, stride_w, pad_h, pad_w, dilation_h,
                         dilation_w):
    planes = x.shape[0]
    out_h, out_w = y.shape[1], y.shape[2]
    # output columns whose windows lie wholly inside the input: [ow_first, ow_end)
    ow_first = min(out_w, (pad_w + stride_w - 1) // stride_w)
    ow_end = max(ow_first, min(out_w, (width - 1 - dilation_w + pad_w) // stride_w + 1))
    row_step = dilation_h * width
    for p in range(planes):
        plane = x[p]
        for oh in range(out_h):
            top = oh * stride_h - pad_h
            y_row = y[p, oh]
            index_row = indices[p, oh]
            inside = top >= 0 and top + dilation_h < height
            interior_first, interior_end = (ow_first, ow_end) if inside else (out_w, out_w)
            if interior_end - interior_first < BLOCK:   # (too few for a block: window by window)
                interior_first, interior_end = out_w, out_w
            done = interior_first
            while done < interior_end:
                start = min(done, interior_end - BLOCK)   # the last block overlaps the one before
                first = top * width + start * stride_w - pad_w
                if stride_w == 1:   # (literal steps: the inlined block loop then has a constant stride)
                    _interior_2x2(plane, y_row[start:], index_row[start:], first, 1, row_step, dilation_w)
                else:
                    _interior_2x2(plane, y_row[start:], index_row[start:], first, 2, row_step, dilation_w)
                done += BLOCK
            for ow in range(out_w):
                if interior_first <= ow < interior_end:
                    continue
                best, where = _window_2x2(plane, width, height, lowest, top, ow * stride_w - pad_w, dilation_h,
                                          dilation_w)
                y_row[ow] = best
                index_row[ow] = where


def max_pool2d_backward(grad_out, indices, input_shape, geometry=None):
    """Scatter-add of grad_out through the flat per-plane indices (overlapping windows accumulate, in
    float64 as a bincount would, so float32 sums are rounded once).

    With the window geometry (kernel, stride, padding, dilation) showing that windows do not overlap,
    no index can repeat, so a plain store replaces the accumulation.
    """
    n, c, height, width = input_shape
    plane = height * width
    overlapping = True
    if geometry is not None:
        kernel, stride, _, dilation = geometry
        overlapping = not all((k - 1) * d + 1 <= s for k, s, d in zip(kernel, stride, dilation))
    windows = grad_out.shape[2] * grad_out.shape[3]   # (explicit: -1 cannot be inferred for an empty batch)
    grad_planes = np.ascontiguousarray(grad_out).reshape(n * c, windows)
    index_planes = np.ascontiguousarray(indices).reshape(n * c, windows)
    grad = np.empty((n * c, plane), dtype=grad_out.dtype)
    _max_pool_backward_planes(grad_planes, index_planes, grad, overlapping)
    return grad.reshape(input_shape)


@njit(cache=True, error_model="numpy")
def _max_pool_backward_planes(grad_out, indices, grad, overlapping):
    planes, plane = grad.shape
    total = np.empty(plane if overlapping else 0, dtype=np.float64)
    for p in range(planes):
        if overlapping:
            total[:] = 0.0
            for k in range(grad_out.shape[1]):
                where = indices[p, k]
                if where < 0 or where >= plane:
                    raise IndexError("max_pool2d_backward: an index lies outside its input plane")
                total[where] += grad_out[p, k]
            for q in range(plane):
                grad[p, q] = total[q]
        else:
            grad[p, :] = 0.0
            for k in range(grad_out.shape[1]):
                where = indices[p, k]
                if where < 0 or where >= plane:
                    raise IndexError("max_pool2d_backward: an index lies outside its input plane")
                grad[p, where] = grad_out[p, k]


def avg_divisor(size, out_size, kernel, stride, padding, count_include_pad):
    """Per-window divisor along one axis (the 2-D divisor is the outer product): the window clipped to
    the padded input, or to the input alone when padding is not counted (PyTorch's rule)."""
    starts = _window_starts(out_size, stride, padding)
    ends = np.minimum(starts + kernel, size + padding)
    if count_include_pad:
        return ends - starts
    return np.minimum(ends, size) - np.maximum(starts, 0)


def _divisor(input_hw, out_hw, kernel, stride, padding, count_include_pad, divisor_override, dtype):
    if divisor_override is not None:
        return dtype.type(divisor_override)
    rows = avg_divisor(input_hw[0], out_hw[0], kernel[0], stride[0], padding[0], count_include_pad)
    cols = avg_divisor(input_hw[1], out_hw[1], kernel[1], stride[1], padding[1], count_include_pad)
    return (rows[:, None] * cols[None, :]).astype(dtype)


def avg_pool2d(x, kernel, stride, padding, out_hw, count_include_pad=True, divisor_override=None):
    padded = _padded(x, padding, out_hw, kernel, stride, (1, 1), 0)
    total = np.zeros(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    for _, _, view in _taps(padded, kernel, stride, (1, 1), out_hw):
        total += view
    return total / _divisor(x.shape[2:], out_hw, kernel, stride, padding, count_include_pad, divisor_override,
                            x.dtype)


def avg_pool2d_backward(grad_out, input_shape, kernel, stride, padding, count_include_pad=True,
                        divisor_override=None):
    out_hw = grad_out.shape[2:]
    scaled = grad_out / _divisor(input_shape[2:], out_hw, kernel, stride, padding, count_include_pad,
                                 divisor_override, grad_out.dtype)
    work = np.zeros(input_shape, dtype=grad_out.dtype)
    padded = _padded(work, padding, out_hw, kernel, stride, (1, 1), 0)
    for _, _, view in _taps(padded, kernel, stride, (1, 1), out_hw):
        view += scaled  # one tap's windows never share an element, so in-place add is exact
    height, width = input_shape[2:]
    return np.ascontiguousarray(padded[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width])


def adaptive_bounds(size, out_size):
    """PyTorch's adaptive windows: [floor(o*size/out), ceil((o+1)*size/out)) for o < out."""
    o = np.arange(out_size, dtype=np.int64)
    return o * size // out_size, -(-(o + 1) * size // out_size)


def adaptive_matrix(size, out_size, dtype):
    """(out_size, size) averaging matrix: row o holds 1/len over window o."""
    starts, ends = adaptive_bounds(size, out_size)
    position = np.arange(size)[None, :]
    inside = (position >= starts[:, None]) & (position < ends[:, None])
    return (inside / (ends - starts)[:, None]).astype(dtype)


def _separable(x, rows, cols):
    """rows @ x[n, c] @ cols.T for every plane, as two large matrix products."""
    n, c, height, width = x.shape
    t = x.reshape(-1, width) @ cols.T                          # (n*c*height, out_w)
    t = t.reshape(n * c, height, cols.shape[0])   # (explicit: -1 cannot be inferred for an empty batch)
    y = np.tensordot(rows, t, axes=([1], [1]))                 # (out_h, n*c, out_w)
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(n, c, rows.shape[0], cols.shape[0])


def adaptive_avg_pool2d(x, out_hw):
    height, width = x.shape[2:]
    return _separable(x, adaptive_matrix(height, out_hw[0], x.dtype), adaptive_matrix(width, out_hw[1], x.dtype))


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    height, width = input_shape[2:]
    out_h, out_w = grad_out.shape[2:]
    rows = adaptive_matrix(height, out_h, grad_out.dtype)
    cols = adaptive_matrix(width, out_w, grad_out.dtype)
    return _separable(grad_out, rows.T, cols.T)
