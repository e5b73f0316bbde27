/* Template of the element-wise passes; included by elementwise.h once per
 * floating type, with REAL, FN, SIGMOID and TANH defined. No include guard. */

/* Per activation g (elementwise.h), with h = g(a):
 *   crnn_bias_<g>      A[i, j] = g(A[i, j] + b[j]) for the (B, H) row-major block A
 *   crnn_backward_<g>  dA[k] = (dA[k] + dh[k]) g'(a[k])     (BPTT of a hidden layer)
 *   crnn_grad_<g>      dA[k] = dA[k] g'(a[k])               (the output layer) */
#define CRNN_ACTIVATION_PASSES(name, G, DG)                                        \
    CRNN_CLONES static void FN(crnn_bias_##name)(                                  \
        ptrdiff_t B, ptrdiff_t H, REAL *A, const REAL *b)                          \
    {                                                                              \
        for (ptrdiff_t i = 0; i < B; i++) {                                        \
            REAL *restrict a = A + i * H;                                          \
            for (ptrdiff_t j = 0; j < H; j++) a[j] = G(a[j] + b[j]);               \
        }                                                                          \
    }                                                                              \
    CRNN_CLONES static void FN(crnn_backward_##name)(                              \
        ptrdiff_t n, REAL *restrict dA, const REAL *restrict dh,                   \
        const REAL *restrict h)                                                    \
    {                                                                              \
        for (ptrdiff_t k = 0; k < n; k++) dA[k] = DG(dA[k] + dh[k], h[k]);         \
    }                                                                              \
    CRNN_CLONES static void FN(crnn_grad_##name)(                                  \
        ptrdiff_t n, REAL *restrict dA, const REAL *restrict h)                    \
    {                                                                              \
        for (ptrdiff_t k = 0; k < n; k++) dA[k] = DG(dA[k], h[k]);                 \
    }

CRNN_ACTIVATION_PASSES(identity, CRNN_IDENTITY_G, CRNN_IDENTITY_DG)
CRNN_ACTIVATION_PASSES(tanh, CRNN_TANH_G, CRNN_TANH_DG)
CRNN_ACTIVATION_PASSES(sigmoid, CRNN_SIGMOID_G, CRNN_SIGMOID_DG)
CRNN_ACTIVATION_PASSES(relu, CRNN_RELU_G, CRNN_RELU_DG)
#undef CRNN_ACTIVATION_PASSES

/* The passes below work on blocks of B consecutive rows of one step: a gate
 * row of G = 4H (LSTM) or 3H (GRU) entries and state rows of H entries. One
 * call per block rather than per row lets the rows overlap in the CPU and
 * pays the call, the constants' set-up and the alias checks once. */

/* The LSTM cell on one unit: the gate pre-activations (bias included) in;
 * the activated gates i, f, g, o, then c = f c_prev + i g and h = o tanh(c)
 * out. The row pass below and the fused step (fused.h) both use it. */
CRNN_ROW void FN(crnn_lstm_cell)(
    REAL a_i, REAL a_f, REAL a_g, REAL a_o, REAL c_prev, REAL *i, REAL *f, REAL *g,
    REAL *o, REAL *c, REAL *h)
{
    REAL i_m = SIGMOID(a_i), f_m = SIGMOID(a_f), g_m = TANH(a_g), o_m = SIGMOID(a_o);
    REAL c_m = f_m * c_prev + i_m * g_m;
    *i = i_m;
    *f = f_m;
    *g = g_m;
    *o = o_m;
    *c = c_m;
    *h = o_m * TANH(c_m);
}

/* LSTM, one row. a (4H): pre-activations in, activated gates (i, f, g, o) out;
 * c = f c_prev + i g; h = o tanh(c). */
CRNN_ROW void FN(crnn_lstm_row)(
    ptrdiff_t H, REAL *restrict a, const REAL *restrict b,
    const REAL *restrict c_prev, REAL *restrict h, REAL *restrict c)
{
    for (ptrdiff_t m = 0; m < H; m++)
        FN(crnn_lstm_cell)(a[m] + b[m], a[H + m] + b[H + m], a[2 * H + m] + b[2 * H + m],
                           a[3 * H + m] + b[3 * H + m], c_prev[m], a + m, a + H + m,
                           a + 2 * H + m, a + 3 * H + m, c + m, h + m);
}

/* LSTM, B rows: a (B, 4H), c_prev, h, c (B, H). */
CRNN_CLONES static void FN(crnn_lstm_rows)(
    ptrdiff_t B, ptrdiff_t H, REAL *a, const REAL *b, const REAL *c_prev, REAL *h,
    REAL *c)
{
    for (ptrdiff_t j = 0; j < B; j++)
        FN(crnn_lstm_row)(H, a + j * 4 * H, b, c_prev + j * H, h + j * H, c + j * H);
}

/* LSTM BPTT, one row. ga (4H): activated gates in, gradients of the gate
 * pre-activations out. dh (H): in dE/dh_t from the next step, out nothing
 * useful (the caller overwrites it with dgates W_hh). dc (H): in dE/dc_t from
 * the next step, out dE/dc_{t-1}. */
CRNN_ROW void FN(crnn_lstm_row_backward)(
    ptrdiff_t H, REAL *restrict ga, const REAL *restrict c_t,
    const REAL *restrict c_prev, const REAL *restrict dh_above,
    const REAL *restrict dh, REAL *restrict dc)
{
    for (ptrdiff_t m = 0; m < H; m++) {
        REAL i = ga[m], f = ga[H + m], g = ga[2 * H + m], o = ga[3 * H + m];
        REAL tc = TANH(c_t[m]);
        REAL dh_t = dh_above[m] + dh[m];                 /* h_t = o tanh(c_t) */
        REAL dc_t = dc[m] + dh_t * o * (1 - tc * tc);
        dc[m] = dc_t * f;                                /* c_t = f c_prev + i g */
        ga[m] = dc_t * g * i * (1 - i);
        ga[H + m] = dc_t * c_prev[m] * f * (1 - f);
        ga[2 * H + m] = dc_t * i * (1 - g * g);
        ga[3 * H + m] = dh_t * tc * o * (1 - o);
    }
}

/* LSTM BPTT, B rows: ga (B, 4H), the others (B, H). */
CRNN_CLONES static void FN(crnn_lstm_rows_backward)(
    ptrdiff_t B, ptrdiff_t H, REAL *ga, const REAL *c_t, const REAL *c_prev,
    const REAL *dh_above, const REAL *dh, REAL *dc)
{
    for (ptrdiff_t j = 0; j < B; j++)
        FN(crnn_lstm_row_backward)(H, ga + j * 4 * H, c_t + j * H, c_prev + j * H,
                                   dh_above + j * H, dh + j * H, dc + j * H);
}

/* The GRU cell on one unit: the pre-activations of r and z (both sides and
 * their biases), the input side of n's (with b_in) and hn = W_hn h_prev +
 * b_hn in; r, z, n = tanh(a_n + r hn) and h = (1 - z) n + z h_prev out. The
 * row pass below and the fused step (fused.h) both use it. */
CRNN_ROW void FN(crnn_gru_cell)(
    REAL a_r, REAL a_z, REAL a_n, REAL hn, REAL h_prev, REAL *r, REAL *z, REAL *n,
    REAL *h)
{
    REAL r_m = SIGMOID(a_r), z_m = SIGMOID(a_z);
    REAL n_m = TANH(a_n + r_m * hn);
    *r = r_m;
    *z = z_m;
    *n = n_m;
    *h = (1 - z_m) * n_m + z_m * h_prev;
}

/* GRU, one row. a (3H): input-side products in, activated gates (r, z, n)
 * out; w (3H): h_prev W_hh^T; writes hn = W_hn h_prev + b_hn and h. */
CRNN_ROW void FN(crnn_gru_row)(
    ptrdiff_t H, REAL *restrict a, const REAL *restrict w, const REAL *restrict b,
    const REAL *restrict b_hn, const REAL *restrict h_prev, REAL *restrict hn,
    REAL *restrict h)
{
    for (ptrdiff_t m = 0; m < H; m++) {
        REAL hn_m = w[2 * H + m] + b_hn[m];
        hn[m] = hn_m;
        FN(crnn_gru_cell)(a[m] + w[m] + b[m], a[H + m] + w[H + m] + b[H + m],
                          a[2 * H + m] + b[2 * H + m], hn_m, h_prev[m], a + m, a + H + m,
                          a + 2 * H + m, h + m);
    }
}

/* GRU, B rows: a, w (B, 3H), h_prev, hn, h (B, H). */
CRNN_CLONES static void FN(crnn_gru_rows)(
    ptrdiff_t B, ptrdiff_t H, REAL *a, const REAL *w, const REAL *b, const REAL *b_hn,
    const REAL *h_prev, REAL *hn, REAL *h)
{
    for (ptrdiff_t j = 0; j < B; j++)
        FN(crnn_gru_row)(H, a + j * 3 * H, w + j * 3 * H, b, b_hn, h_prev + j * H,
                         hn + j * H, h + j * H);
}

/* GRU BPTT, one row. ga (3H): activated gates in, input-side pre-activation
 * gradients [dr~, dz~, dn~] out; gh (3H) out: recurrent-side gradients
 * [dr~, dz~, dn~ r]; dh (H): in dE/dh_t from the next step, out the direct
 * part z dh_t of dE/dh_{t-1} (the caller adds gh W_hh). */
CRNN_ROW void FN(crnn_gru_row_backward)(
    ptrdiff_t H, REAL *restrict ga, REAL *restrict gh, const REAL *restrict hn,
    const REAL *restrict h_prev, const REAL *restrict dh_above, REAL *restrict dh)
{
    for (ptrdiff_t m = 0; m < H; m++) {
        REAL r = ga[m], z = ga[H + m], n = ga[2 * H + m];
        REAL dh_t = dh_above[m] + dh[m];   /* h_t = (1 - z) n + z h_prev */
        REAL dn_pre = dh_t * (1 - z) * (1 - n * n);
        REAL dr_pre = dn_pre * hn[m] * r * (1 - r);
        REAL dz_pre = dh_t * (h_prev[m] - n) * z * (1 - z);
        dh[m] = dh_t * z;
        ga[m] = dr_pre;
        ga[H + m] = dz_pre;
        ga[2 * H + m] = dn_pre;
        gh[m] = dr_pre;
        gh[H + m] = dz_pre;
        gh[2 * H + m] = dn_pre * r;
    }
}

/* GRU BPTT, B rows: ga, gh (B, 3H), the others (B, H). */
CRNN_CLONES static void FN(crnn_gru_rows_backward)(
    ptrdiff_t B, ptrdiff_t H, REAL *ga, REAL *gh, const REAL *hn, const REAL *h_prev,
    const REAL *dh_above, REAL *dh)
{
    for (ptrdiff_t j = 0; j < B; j++)
        FN(crnn_gru_row_backward)(H, ga + j * 3 * H, gh + j * 3 * H, hn + j * H,
                                  h_prev + j * H, dh_above + j * H, dh + j * H);
}

/* Adam, one step over n parameters (Kingma & Ba, 2015, Algorithm 1 with the
 * bias corrections folded into step = lr sqrt(1 - b2^t) / (1 - b1^t)):
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; w -= step m / (sqrt(v) + eps). */
CRNN_CLONES static void FN(crnn_adam)(
    ptrdiff_t n, REAL *restrict w, const REAL *restrict g, REAL *restrict m,
    REAL *restrict v, REAL step, REAL b1, REAL b2, REAL eps)
{
    for (ptrdiff_t k = 0; k < n; k++) {
        REAL m_k = b1 * m[k] + (1 - b1) * g[k];
        REAL v_k = b2 * v[k] + (1 - b2) * (g[k] * g[k]);
        m[k] = m_k;
        v[k] = v_k;
        w[k] -= step * (m_k / (SQRT(v_k) + eps));
    }
}
