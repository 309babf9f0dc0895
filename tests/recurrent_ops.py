"""The public bidirectional recurrent ops, forward then backward, one call for every cell type: shared by
the CPU, simulator and GPU tests (each compares the results with its own reference)."""
import kernels


def run_bidirectional(mode, x, h0, c0, weights, lengths, grad_y, grad_h, grad_c, weight_grad_outs=None):
    """(outputs, gradients, saved) of kernels.<cell>_bidirectional and its backward on whichever device
    the arrays live; weights holds each direction's (w_ih, w_hh, b_ih, b_hh); the gradients keep their
    None entries (absent biases). weight_grad_outs: passed to the backward."""
    if mode == "lstm":
        *outputs, saved = kernels.lstm_bidirectional(x, h0, c0, weights, lengths=lengths, training=True)
        grads = kernels.lstm_bidirectional_backward(saved, grad_y, grad_h, grad_c, weight_grad_outs=weight_grad_outs)
    elif mode == "gru":
        *outputs, saved = kernels.gru_bidirectional(x, h0, weights, lengths=lengths, training=True)
        grads = kernels.gru_bidirectional_backward(saved, grad_y, grad_h, weight_grad_outs=weight_grad_outs)
    else:
        *outputs, saved = kernels.rnn_bidirectional(x, h0, weights, nonlinearity=mode[4:], lengths=lengths,
                                                    training=True)
        grads = kernels.rnn_bidirectional_backward(saved, grad_y, grad_h, weight_grad_outs=weight_grad_outs)
    return outputs, list(grads), saved
