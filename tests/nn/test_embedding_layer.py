"""nn.Embedding and F.embedding against torch.nn.Embedding with the state dict copied (float64, CPU path): outputs,
weight gradients, padding rows, max_norm, from_pretrained, and an Embedding -> LSTM -> Linear model's loss and
gradients."""
import numpy as np
import pytest

import nn
from nn import functional as F
from tests.oracle import assert_close, random_array, torch_module


def _indices(shape, num_embeddings, seed=0, dtype=np.int64):
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, num_embeddings, size=shape).astype(dtype)
    indices.reshape(-1)[:3] = 2        # repeats of one row in every case
    return indices


def twins(*args, **options):
    torch = torch_module()
    torch.manual_seed(3)
    theirs = torch.nn.Embedding(*args, **options).double()
    ours = nn.Embedding(*args, **options, dtype=np.float64)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def forward_backward(ours, theirs, indices, seed=1):
    """Both layers on the same indices, backward of a random weighting; returns (ours, torch) outputs."""
    torch = torch_module()
    out_ours, out_theirs = ours(indices), theirs(torch.from_numpy(indices))
    grad = random_array(out_ours.shape, np.float64, seed=seed)
    out_ours.backward(grad)
    out_theirs.backward(torch.from_numpy(grad))
    return out_ours, out_theirs


@pytest.mark.parametrize("options", [{}, {"padding_idx": 2}, {"padding_idx": -1, "scale_grad_by_freq": True},
                                     {"scale_grad_by_freq": True}])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_embedding_matches_torch(options, index_dtype):
    ours, theirs = twins(11, 5, **options)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert ours.padding_idx == theirs.padding_idx
    indices = _indices((4, 9), 11, seed=4, dtype=index_dtype)
    indices[0, -1] = 10
    out_ours, out_theirs = forward_backward(ours, theirs, indices)
    assert_close(out_ours.data, out_theirs.detach().numpy(), np.float64, name="output")
    assert_close(ours.weight.grad.data, theirs.weight.grad.numpy(), np.float64, name="weight grad")
    if "padding_idx" in options:
        assert not ours.weight.grad.data[ours.padding_idx].any()


def test_embedding_accepts_tensors_and_any_index_shape():
    ours, theirs = twins(7, 3)
    torch = torch_module()
    for shape in [(), (5,), (2, 3, 4)]:
        indices = _indices(shape, 7, seed=5) if shape else np.array(4, np.int64)
        expected = theirs(torch.from_numpy(indices)).detach().numpy()
        assert_close(ours(nn.Tensor(indices)).data, expected, np.float64)
        assert_close(F.embedding(indices, ours.weight).data, expected, np.float64)


def test_default_initialisation_and_repr():
    nn.manual_seed(0)
    layer = nn.Embedding(2000, 16, padding_idx=3)
    weight = layer.weight.data
    assert weight.dtype == np.float32 and weight.shape == (2000, 16) and layer.weight.requires_grad
    assert not weight[3].any()
    assert abs(weight.mean()) < 0.02 and abs(weight.std() - 1.0) < 0.02   # N(0, 1), as torch
    assert layer(np.array([[3, 1]])).dtype == np.float32
    torch = torch_module()
    for args, options in [((10, 3), {}), ((10, 3), {"padding_idx": -2}),
                          ((10, 3), {"max_norm": 1.5, "norm_type": 1.0, "scale_grad_by_freq": True})]:
        assert repr(nn.Embedding(*args, **options)) == repr(torch.nn.Embedding(*args, **options))


def test_padding_row_gets_no_gradient_and_stays_zero():
    ours, _ = twins(6, 4, padding_idx=0)
    optimizer = nn.optim.SGD(ours.parameters(), lr=0.5)
    indices = np.array([[0, 1, 0], [2, 0, 5]], np.int64)
    for step in range(2):
        optimizer.zero_grad()
        (ours(indices) * random_array((2, 3, 4), np.float64, seed=step)).sum().backward()
        optimizer.step()
    assert not ours.weight.data[0].any()


def test_from_pretrained_matches_torch():
    torch = torch_module()
    embeddings = random_array((8, 5), np.float64, seed=6)
    frozen = nn.Embedding.from_pretrained(embeddings)
    assert not frozen.weight.requires_grad and frozen.weight.data is embeddings   # memory shared, as torch
    indices = _indices((3, 4), 8, seed=7)
    assert_close(frozen(indices).data, embeddings[indices], np.float64)
    assert not frozen(indices).requires_grad
    ours = nn.Embedding.from_pretrained(nn.Tensor(embeddings.copy()), freeze=False, padding_idx=2)
    theirs = torch.nn.Embedding.from_pretrained(torch.from_numpy(embeddings.copy()), freeze=False, padding_idx=2)
    assert ours.weight.requires_grad and ours.weight.data[2].any()   # the padding row kept as given
    assert repr(ours) == repr(theirs)
    out_ours, out_theirs = forward_backward(ours, theirs, indices)
    assert_close(out_ours.data, out_theirs.detach().numpy(), np.float64)
    assert_close(ours.weight.grad.data, theirs.weight.grad.numpy(), np.float64)
    with pytest.raises(ValueError, match="Embedding.from_pretrained: embeddings must be a 2-D"):
        nn.Embedding.from_pretrained(embeddings[0])


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
def test_max_norm_renormalises_rows_as_torch(norm_type):
    """The rows looked up whose norm exceeds max_norm are scaled in place before the lookup; others are untouched."""
    ours, theirs = twins(9, 4, max_norm=0.6, norm_type=norm_type)
    before = ours.weight.data.copy()
    indices = np.array([[1, 3, 1], [7, 0, 3]], np.int64)
    out_ours, out_theirs = forward_backward(ours, theirs, indices)
    assert_close(out_ours.data, out_theirs.detach().numpy(), np.float64)
    assert_close(ours.weight.data, theirs.weight.detach().numpy(), np.float64, name="renormalised weight")
    assert_close(ours.weight.grad.data, theirs.weight.grad.numpy(), np.float64)
    untouched = np.setdiff1d(np.arange(9), indices)
    np.testing.assert_array_equal(ours.weight.data[untouched], before[untouched])
    assert not np.allclose(ours.weight.data[np.unique(indices)], before[np.unique(indices)])


def test_functional_embedding_options_and_errors():
    torch = torch_module()
    weight = random_array((6, 3), np.float64, seed=8)
    indices = np.array([[5, 0, 5], [1, 4, 4]], np.int64)
    w_ours = nn.Tensor(weight.copy(), requires_grad=True)
    w_theirs = torch.tensor(weight.copy(), requires_grad=True)
    grad = random_array((2, 3, 3), np.float64, seed=9)
    F.embedding(indices, w_ours, padding_idx=4, scale_grad_by_freq=True).backward(grad)
    torch.nn.functional.embedding(torch.from_numpy(indices), w_theirs, padding_idx=4,
                                  scale_grad_by_freq=True).backward(torch.from_numpy(grad))
    assert_close(w_ours.grad.data, w_theirs.grad.numpy(), np.float64)
    with pytest.raises(NotImplementedError, match="embedding: sparse=True"):
        F.embedding(indices, w_ours, sparse=True)
    with pytest.raises(NotImplementedError, match=r"Embedding\(6, 3\): sparse=True"):
        nn.Embedding(6, 3, sparse=True)
    with pytest.raises(TypeError, match="embedding: indices must be int32 or int64, got float64"):
        F.embedding(indices.astype(np.float64), w_ours)
    with pytest.raises(TypeError, match="embedding: input must be an integer Tensor or array, got list"):
        F.embedding([1, 2], w_ours)
    with pytest.raises(IndexError, match=r"embedding: indices hold a value outside \[0, 6\)"):
        F.embedding(np.array([6]), w_ours)
    with pytest.raises(IndexError, match="embedding: .*negative"):
        F.embedding(np.array([-1]), w_ours, max_norm=1.0)
    with pytest.raises(ValueError, match="embedding: weight must be 2-D"):
        F.embedding(indices, w_ours.reshape(-1))
    with pytest.raises(ValueError, match=r"Embedding\(6, 3\): padding_idx must be within \[-6, 6\)"):
        nn.Embedding(6, 3, padding_idx=6)
    with pytest.raises(ValueError, match=r"Embedding\(6, 3\): _weight must be an array of shape \(6, 3\)"):
        nn.Embedding(6, 3, _weight=np.zeros((3, 6)))


def test_embedding_constructor_errors_name_the_layer():
    """Negative or non-integer sizes and a non-integer padding_idx: errors naming the layer (a bare NumPy
    'negative dimensions' or IndexError before); zero sizes are allowed, as torch's."""
    torch = torch_module()
    with pytest.raises(ValueError, match=r"Embedding\(-1, 3\): num_embeddings must be an integer >= 0, got -1"):
        nn.Embedding(-1, 3)
    with pytest.raises(ValueError, match=r"Embedding\(3, -2\): embedding_dim must be an integer >= 0, got -2"):
        nn.Embedding(3, -2)
    with pytest.raises(TypeError, match=r"Embedding\(3.0, 2\): num_embeddings must be an integer >= 0, got float"):
        nn.Embedding(3.0, 2)
    with pytest.raises(TypeError, match=r"Embedding\(3, 2\): padding_idx must be an integer row index or None, "
                                        r"got float 1.5"):
        nn.Embedding(3, 2, padding_idx=1.5)
    for rows, columns in ((0, 2), (3, 0)):
        assert nn.Embedding(rows, columns).weight.shape == tuple(torch.nn.Embedding(rows, columns).weight.shape)
    assert nn.Embedding(np.int64(4), 2, padding_idx=np.int64(-1)).padding_idx == 3


def _models(vocabulary, embedding_dim, hidden_size, classes):
    """The same Embedding -> LSTM -> Linear text classifier in numbanet and in torch, weights copied from torch."""
    torch = torch_module()

    class Ours(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocabulary, embedding_dim, padding_idx=0, dtype=np.float64)
            self.rnn = nn.LSTM(embedding_dim, hidden_size, batch_first=True, dtype=np.float64)
            self.head = nn.Linear(hidden_size, classes, dtype=np.float64)

        def forward(self, tokens):
            _, (h, _) = self.rnn(self.embed(tokens))
            return self.head(h[-1])

    class Theirs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocabulary, embedding_dim, padding_idx=0)
            self.rnn = torch.nn.LSTM(embedding_dim, hidden_size, batch_first=True)
            self.head = torch.nn.Linear(hidden_size, classes)

        def forward(self, tokens):
            _, (h, _) = self.rnn(self.embed(tokens))
            return self.head(h[-1])

    torch.manual_seed(11)
    theirs = Theirs().double()
    ours = Ours()
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def test_embedding_lstm_linear_model_matches_torch():
    torch = torch_module()
    ours, theirs = _models(vocabulary=17, embedding_dim=6, hidden_size=8, classes=3)
    rng = np.random.default_rng(12)
    tokens = rng.integers(1, 17, size=(5, 7))
    tokens[:, 5:] = 0                                  # padded tails
    tokens[0, :3] = 9                                  # a repeated token
    labels = rng.integers(0, 3, size=5)
    loss_ours = F.cross_entropy(ours(tokens), labels)
    loss_theirs = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(tokens)), torch.from_numpy(labels))
    assert_close(loss_ours.data, loss_theirs.detach().numpy(), np.float64, name="loss")
    loss_ours.backward()
    loss_theirs.backward()
    theirs_params = dict(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == list(theirs_params)
    for name, parameter in ours.named_parameters():
        assert_close(parameter.grad.data, theirs_params[name].grad.numpy(), np.float64, name=f"grad of {name}")
    assert not ours.embed.weight.grad.data[0].any()
