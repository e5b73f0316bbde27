/* The LSTM and GRU forward steps as one kernel: both products and the gates
 * in registers.
 *
 * A step of the LSTM forward pass is, for B_t rows,
 *
 *     a = x_t W_ih^T + h_prev W_hh^T + b          (B_t, 4H): gates i, f, g, o
 *     c_t = sigmoid(a_f) c_prev + sigmoid(a_i) tanh(a_g),  h_t = sigmoid(a_o) tanh(c_t)
 *
 * Run as a product into the (B_t, 4H) gate block followed by an element-wise
 * pass, every gate pre-activation is stored by the product and loaded again
 * by the pass, and the input product, taken for all rows before the loop,
 * stores its (N, 4H) result once more. Here one tile of MR rows by VL hidden
 * units accumulates the four gates of those units at once, over the inputs
 * and then the previous states, and applies the cell's equations while the
 * sums are still in registers: the pre-activations never reach memory.
 *
 * For that, crnn_lstm_pack_* lays [b; W_ih^T; W_hh^T] (1 + I + H, 4H) out in
 * panels of VL units: panel p holds, in each of its 1 + I + H rows, the
 * columns of gates i, f, g and o of units p VL .. p VL + VL - 1, side by
 * side (4 VL values, zero past H). VL is one vector: 16 floats or 8 doubles
 * with AVX-512, 8 floats or 4 doubles with AVX2. The tile reads a panel row
 * as four vectors, one per gate, so each accumulator holds one gate of VL
 * units, which is what the cell's equations combine.
 *
 * The GRU step is the same tile with four accumulators per row too: r and z
 * (input and recurrent sides summed), the input side of n, and the
 * recurrent side of n (W_hn h_prev + b_hn, which the reset gate scales). Its
 * panels (crnn_gru_pack_*) hold a row of the four biases [b_r, b_z, b_in,
 * b_hn], then rows of three gates' weights: [W_ir, W_iz, W_in] for the I
 * input rows, [W_hr, W_hz, W_hn] for the H recurrent ones.
 *
 * The kernel choice follows crnn_packed_isa() (packed.h): the panel width
 * depends on it, so a pass packs and steps under the same choice.
 */
#ifndef CRNN_FUSED_H
#define CRNN_FUSED_H

#include "packed.h"
/* For crnn_lstm_cell; this translation unit (blas.pyx) uses none of the
 * element-wise passes that come with it. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "elementwise.h"
#pragma GCC diagnostic pop
#else
#include "elementwise.h"
#endif

/* Elements of the packed weights, for any kernel and type: the units
 * rounded up to 16 (the widest panel) times the values per unit of a panel. */
static inline ptrdiff_t crnn_lstm_packed_size(ptrdiff_t I, ptrdiff_t H)
{
    return (H + 15) / 16 * 16 * 4 * (1 + I + H);
}

static inline ptrdiff_t crnn_gru_packed_size(ptrdiff_t I, ptrdiff_t H)
{
    return (H + 15) / 16 * 16 * (4 + 3 * (I + H));
}

#define REAL double
#define FN(name) name##_d
#define SIGMOID crnn_sigmoid
#define TANH crnn_tanh
#include "fused_impl.h"
#undef REAL
#undef FN
#undef SIGMOID
#undef TANH

#define REAL float
#define FN(name) name##_f
#define SIGMOID crnn_sigmoidf
#define TANH crnn_tanhf
#include "fused_impl.h"
#undef REAL
#undef FN
#undef SIGMOID
#undef TANH

#endif
