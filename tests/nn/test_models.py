"""The three models against identical PyTorch models (state dict copied, strict), float64 on the CPU:
loss, every parameter gradient, batch-norm running statistics; decoding; bad input."""
import numpy as np
import pytest

import nn
from benchmarks.train import torch_layer
from nn import layers, models
from tests.oracle import assert_close, random_array, torch_module

TOLERANCE = dict(rtol=1e-8, atol=1e-10)


def twin_model(ours, forward):
    """A torch.nn.Module with our model's children under the same names and the given forward."""
    torch = torch_module()

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in ours._modules.items():
                setattr(self, name, torch_layer(child))

        def forward(self, *args):
            return forward(self, *args)

    twin = Twin().double()
    ours.load_state_dict(twin.state_dict())  # strict: every key and shape must match
    return twin


def compare_gradients(ours, twin):
    names = [name for name, _ in ours.named_parameters()]
    assert names == [name for name, _ in twin.named_parameters()]
    for (name, p), (_, q) in zip(ours.named_parameters(), twin.named_parameters()):
        assert p.grad is not None, name
        assert_close(p.grad.data, q.grad.numpy(), np.float64, name=f"grad {name}", **TOLERANCE)


def compare_buffers(ours, twin):
    theirs = twin.state_dict()
    for name, value in ours.named_buffers():
        assert_close(np.asarray(value, np.float64), theirs[name].numpy().astype(np.float64), np.float64,
                     name=name, **TOLERANCE)


def cnn_forward(self, x):
    return self.classifier(self.features(x))


def test_cnn_cross_entropy_loss_and_gradients_match_torch():
    torch = torch_module()
    model = models.CNN(dtype=np.float64)
    twin = twin_model(model, cnn_forward)
    images = random_array((6, 1, 8, 8), np.float64, seed=1, low=0.0)
    labels = np.array([0, 3, 9, 3, 5, 1])
    loss = nn.functional.cross_entropy(model(nn.Tensor(images)), labels)
    loss.backward()
    twin_loss = torch.nn.functional.cross_entropy(twin(torch.tensor(images)), torch.tensor(labels))
    twin_loss.backward()
    assert_close(loss.data, twin_loss.detach().numpy(), np.float64, **TOLERANCE)
    compare_gradients(model, twin)
    compare_buffers(model, twin)  # batch-norm running statistics after one training forward
    model.eval()
    twin.eval()
    with nn.no_grad():
        logits = model(nn.Tensor(images))
    assert_close(logits.data, twin(torch.tensor(images)).detach().numpy(), np.float64, **TOLERANCE)


def test_cnn_keys_and_shapes():
    model = models.CNN(in_channels=3, num_classes=5, channels=(8, 16, 16), image_size=16, hidden=32)
    keys = list(model.state_dict())
    assert keys[:7] == ["features.0.weight", "features.0.bias", "features.1.weight", "features.1.bias",
                        "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"]
    assert model.state_dict()["classifier.1.weight"].shape == (32, 16 * 2 * 2)
    assert model(nn.Tensor(random_array((2, 3, 16, 16)))).shape == (2, 5)


def rnn_classifier_forward(cell, bidirectional, per_step):
    def forward(self, x):
        output, state = self.rnn(x)
        if per_step:
            return self.fc(output)
        h_n = state[0] if cell == "lstm" else state
        last = h_n[-1] if not bidirectional else torch_module().cat([h_n[-2], h_n[-1]], dim=1)
        return self.fc(last)
    return forward


@pytest.mark.parametrize("cell, num_layers, bidirectional, per_step", [
    ("lstm", 1, False, False), ("gru", 2, True, False), ("rnn", 1, True, True), ("lstm", 2, True, True)])
def test_rnn_classifier_matches_torch(cell, num_layers, bidirectional, per_step):
    torch = torch_module()
    model = models.RNNClassifier(5, 6, 4, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                                 per_step=per_step, dtype=np.float64)
    twin = twin_model(model, rnn_classifier_forward(cell, bidirectional, per_step))
    x = random_array((3, 7, 5), np.float64, seed=2)
    weights = random_array((3, 7, 4) if per_step else (3, 4), np.float64, seed=3)
    out = model(nn.Tensor(x))
    (out * weights).sum().backward()
    out_t = twin(torch.tensor(x))
    (out_t * torch.tensor(weights)).sum().backward()
    assert_close(out.data, out_t.detach().numpy(), np.float64, **TOLERANCE)
    compare_gradients(model, twin)


def test_rnn_classifier_lengths_use_each_samples_last_step():
    model = models.RNNClassifier(2, 5, 3, cell="gru", dtype=np.float64)
    x = random_array((2, 6, 2), np.float64, seed=4)
    full = model(nn.Tensor(x), lengths=[6, 3])
    short = model(nn.Tensor(x[1:2, :3]))
    assert_close(full.data[1], short.data[0], np.float64, **TOLERANCE)
    assert_close(full.data[0], model(nn.Tensor(x[:1])).data[0], np.float64, **TOLERANCE)


def crnn_forward(self, images):
    torch = torch_module()
    features = self.cnn(images)
    batch, channels, _, steps = features.shape
    output, _ = self.rnn(features.reshape(batch, channels, steps).permute(2, 0, 1))
    return torch.nn.functional.log_softmax(self.fc(output), dim=2)


@pytest.mark.parametrize("height, width", [(12, 21), (32, 18)])
def test_crnn_ctc_loss_and_gradients_match_torch(height, width):
    torch = torch_module()
    model = models.CRNN(image_height=height, num_classes=5, channels=(3, 4, 4, 5, 5, 6, 6), hidden_size=4,
                        dtype=np.float64)
    twin = twin_model(model, crnn_forward)
    images = random_array((3, 1, height, width), np.float64, seed=5, low=0.0)
    log_probs = model(nn.Tensor(images))
    steps = model.output_length(width)
    assert log_probs.shape == (steps, 3, 6)
    targets = np.array([[1, 2, 2], [5, 0, 0], [3, 4, 0]])   # repeated label, padding after the lengths
    target_lengths = np.array([3, 1, 2])
    input_lengths = np.array([steps, steps, steps - 1])
    loss = nn.CTCLoss()(log_probs, targets, input_lengths, target_lengths)
    loss.backward()
    log_probs_t = twin(torch.tensor(images))
    loss_t = torch.nn.CTCLoss()(log_probs_t, torch.tensor(targets), torch.tensor(input_lengths),
                                torch.tensor(target_lengths))
    loss_t.backward()
    assert_close(log_probs.data, log_probs_t.detach().numpy(), np.float64, **TOLERANCE)
    assert_close(loss.data, loss_t.detach().numpy(), np.float64, **TOLERANCE)
    compare_gradients(model, twin)
    compare_buffers(model, twin)


def test_crnn_geometry_follows_the_paper():
    model = models.CRNN()  # image height 32, the paper's channels
    convs = [m for m in model.cnn if isinstance(m, layers.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 256, 512, 512, 512]
    assert convs[-1].kernel_size == (2, 2) and convs[-1].padding == (0, 0)
    assert sum(isinstance(m, layers.BatchNorm2d) for m in model.cnn) == 3
    assert len(model.pools) == 4
    assert model.output_length(100) == 26  # the paper's T for 32x100 images
    assert model.rnn.num_layers == 2 and model.rnn.bidirectional and model.rnn.hidden_size == 256
    assert model.fc.out_features == 37
    small = models.CRNN(image_height=12, num_classes=10, hidden_size=32)
    assert len(small.pools) == 2
    assert [c for c in small.cnn if isinstance(c, layers.Conv2d)][-1].kernel_size == (3, 2)


def test_greedy_decoding_merges_repeats_and_drops_blanks():
    classes = 4
    paths = [[1, 1, 0, 1, 2, 2, 0, 0, 3], [0, 0, 0, 0, 0, 0, 0, 0, 0], [2, 0, 2, 2, 3, 3, 3, 0, 1]]
    log_probs = np.full((9, 3, classes), np.log(0.1 / 3))
    for sample, path in enumerate(paths):
        for step, label in enumerate(path):
            log_probs[step, sample, label] = np.log(0.9)
    assert models.ctc_greedy_decode(nn.Tensor(log_probs)) == [[1, 1, 2, 3], [], [2, 2, 3, 1]]
    assert models.ctc_greedy_decode(log_probs, input_lengths=[9, 9, 4]) == [[1, 1, 2, 3], [], [2, 2]]
    assert models.ctc_beam_search(log_probs, beam_width=4) == [[1, 1, 2, 3], [], [2, 2, 3, 1]]


def test_beam_search_finds_the_most_probable_labelling():
    """Two steps, classes blank/a: P(a) = P(aa) + P(a-) + P(-a) = .36+.24+.24 = .84 beats the best path."""
    probs = np.array([[[0.4, 0.6]], [[0.4, 0.6]]])
    assert models.ctc_greedy_decode(np.log(probs)) == [[1]]
    probs = np.array([[[0.55, 0.45]], [[0.55, 0.45]]])   # best path: blank blank -> []; P([]) = .3025
    assert models.ctc_greedy_decode(np.log(probs)) == [[]]
    assert models.ctc_beam_search(np.log(probs), beam_width=2) == [[1]]  # P([1]) = .2025+2*.2475 = .6975


def test_models_reject_bad_input():
    with pytest.raises(ValueError, match=r"CNN: expected images of shape \(B, 1, 8, 8\), got \(2, 3, 8, 8\)"):
        models.CNN()(nn.Tensor(random_array((2, 3, 8, 8))))
    with pytest.raises(ValueError, match=r"RNNClassifier: expected sequences of shape \(B, T, 8\)"):
        models.RNNClassifier(8, 4, 2)(nn.Tensor(random_array((2, 8))))
    with pytest.raises(ValueError, match=r"LSTM: input.size\(-1\) must equal input_size=8"):
        models.RNNClassifier(8, 4, 2)(nn.Tensor(random_array((2, 5, 7))))
    with pytest.raises(ValueError, match=r"CRNN: expected images of shape \(B, 1, 12, W\)"):
        models.CRNN(image_height=12, hidden_size=4)(nn.Tensor(random_array((1, 1, 16, 30))))
    with pytest.raises(ValueError, match="CRNN: images 1 pixels wide are too narrow"):
        models.CRNN(image_height=12, hidden_size=4, channels=(2,) * 7)(nn.Tensor(random_array((1, 1, 12, 1))))
    with pytest.raises(ValueError, match="RNNClassifier: cell must be one of"):
        models.RNNClassifier(8, 4, 2, cell="transformer")
    with pytest.raises(ValueError, match="CNN: 3 pooling blocks need image_size >= 8"):
        models.CNN(channels=(4, 4, 4), image_size=4)
