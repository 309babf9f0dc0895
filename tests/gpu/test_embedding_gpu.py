"""Embedding kernels on a real GPU against the CPU path (float64 reference) at realistic sizes: a vocabulary
lookup, the atomic weight gradient with heavily repeated tokens, padding and frequency scaling, the index
check, the layer in a model, and a captured training step."""
import numpy as np
import pytest

import kernels
import nn
from kernels.cpu import embedding as cpu
from tests.oracle import assert_close, random_array


def _tokens(shape, vocabulary, dtype, seed, hot=0.2):
    """Token ids with a Zipf-like skew: `hot` of them are token 1, so many threads add into one row at once."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocabulary, size=shape)
    tokens[rng.random(shape) < hot] = 1
    tokens.reshape(-1)[-1] = vocabulary - 1
    return tokens.astype(dtype)


@pytest.mark.parametrize("vocabulary,dim,shape,index_dtype", [(50000, 256, (64, 35), np.int64),
                                                              (1000, 300, (128, 50), np.int32),
                                                              (33, 1, (4099,), np.int64)])
def test_embedding_on_gpu_matches_cpu(vocabulary, dim, shape, index_dtype):
    import cupy
    weight = random_array((vocabulary, dim), seed=1)
    tokens = _tokens(shape, vocabulary, index_dtype, seed=2)
    out = kernels.embedding(cupy.asarray(weight), cupy.asarray(tokens))
    assert out.shape == shape + (dim,) and out.dtype == np.float32
    np.testing.assert_array_equal(cupy.asnumpy(out), cpu.embedding(weight, tokens))   # a copy: exact


@pytest.mark.parametrize("padding_idx,scale_grad_by_freq", [(None, False), (0, False), (None, True), (-1, True)])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_embedding_backward_on_gpu_matches_cpu(padding_idx, scale_grad_by_freq, index_dtype):
    import cupy
    vocabulary, dim, shape = 5000, 257, (96, 40)
    tokens = _tokens(shape, vocabulary, index_dtype, seed=3)
    tokens[:, -5:] = 0                           # padded tails
    grad_output = random_array(shape + (dim,), seed=4)
    grad_weight = kernels.embedding_backward(cupy.asarray(grad_output), cupy.asarray(tokens), vocabulary,
                                             padding_idx=padding_idx, scale_grad_by_freq=scale_grad_by_freq)
    padding = -1 if padding_idx is None else padding_idx % vocabulary
    expected = cpu.embedding_backward(grad_output.astype(np.float64), tokens, vocabulary, padding, scale_grad_by_freq)
    # token 1 sums ~770 terms of size ~1 in fp32, in any order (atomics): ~1e-6 * count absolute
    assert_close(grad_weight, expected, np.float32, rtol=1e-4, atol=1e-3)
    if padding_idx is not None:
        assert not bool(cupy.any(grad_weight[padding]))


def test_embedding_on_gpu_rejects_out_of_range_indices():
    import cupy
    weight = cupy.asarray(random_array((100, 8), seed=5))
    for bad in (100, -3):
        tokens = np.arange(64, dtype=np.int64).reshape(8, 8)
        tokens[5, 6] = bad
        with pytest.raises(IndexError, match=r"embedding: indices hold a value outside \[0, 100\)"):
            kernels.embedding(weight, cupy.asarray(tokens))
        grad_output = cupy.ones((8, 8, 8), cupy.float32)
        with pytest.raises(IndexError, match=r"embedding_backward: indices hold a value outside \[0, 100\)"):
            kernels.embedding_backward(grad_output, cupy.asarray(tokens), 100, scale_grad_by_freq=True)
        unchecked = kernels.embedding_backward(grad_output, cupy.asarray(tokens), 100, check_indices=False)
        assert float(unchecked.sum()) == 63 * 8   # the bad index adds nothing


def _text_classifier(vocabulary=200, embedding_dim=32, hidden_size=48, classes=5):
    class TextClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocabulary, embedding_dim, padding_idx=0)
            self.rnn = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
            self.head = nn.Linear(hidden_size, classes)

        def forward(self, tokens):
            _, (h, _) = self.rnn(self.embed(tokens))
            return self.head(h[-1])

    return TextClassifier()


def test_embedding_lstm_model_on_gpu_matches_cpu():
    import cupy
    nn.manual_seed(0)
    model = _text_classifier()
    on_gpu = _text_classifier()
    on_gpu.load_state_dict(model.state_dict())
    on_gpu.to("cuda")
    tokens = _tokens((32, 20), 200, np.int64, seed=6)
    tokens[:, 15:] = 0
    labels = np.random.default_rng(7).integers(0, 5, size=32)
    loss = nn.functional.cross_entropy(model(tokens), labels)
    loss_gpu = nn.functional.cross_entropy(on_gpu(nn.Tensor(cupy.asarray(tokens))), cupy.asarray(labels))
    assert_close(loss_gpu.numpy(), loss.numpy(), np.float32, rtol=1e-4, atol=1e-5, name="loss")
    loss.backward()
    loss_gpu.backward()
    cpu_parameters = dict(model.named_parameters())
    for name, parameter in on_gpu.named_parameters():
        assert_close(parameter.grad.data, cpu_parameters[name].grad.data, np.float32, rtol=2e-3, atol=2e-5,
                     name=f"grad of {name}")
    assert not bool(cupy.any(on_gpu.embed.weight.grad.data[0]))


def test_captured_embedding_training_step_matches_eager():
    """The lookup and its backward inside a CUDA graph: no host read while capturing (the index checks are
    skipped), and replays give the eager steps' losses."""
    import cupy
    models = []
    for _ in range(2):
        nn.manual_seed(1)
        model = nn.Sequential(nn.Embedding(300, 16, padding_idx=0, scale_grad_by_freq=True), nn.Flatten(),
                              nn.Linear(16 * 12, 10)).to("cuda")
        optimizer = nn.optim.SGD(model.parameters(), lr=0.1)

        def step(tokens, targets, model=model, optimizer=optimizer):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(tokens), targets)
            loss.backward()
            optimizer.step()
            return loss

        models.append((model, step))
    (eager_model, eager_step), (model, step) = models
    captured = nn.capture(step)
    rng = np.random.default_rng(8)
    for index in range(5):
        tokens = nn.Tensor(cupy.asarray(_tokens((64, 12), 300, np.int64, seed=10 + index)))
        targets = cupy.asarray(rng.integers(0, 10, size=64))
        eager_loss = float(eager_step(tokens, targets).numpy())
        captured_loss = float(captured(tokens, targets).numpy())
        assert captured.captured == (index >= 1)
        assert_close(np.float32(captured_loss), np.float32(eager_loss), np.float32, rtol=1e-4, atol=1e-5,
                     name=f"loss at step {index}")
    assert_close(model[0].weight.data, eager_model[0].weight.data, np.float32, rtol=1e-4, atol=1e-5)
