/* Template of the fused LSTM step (see lstm_fused.h); included once per
 * floating type with REAL, FN, SIGMOID and TANH defined. No include guard. */

/* The units of one panel under kernel ``isa``: one vector of REAL. */
static inline ptrdiff_t FN(crnn_lstm_panel_units)(int isa)
{
    return (ptrdiff_t)((isa == CRNN_ISA_AVX512 ? 64 : 32) / sizeof(REAL));
}

/* P = [b; W_ih^T; W_hh^T] in panels of VL units (lstm_fused.h), for the
 * kernel crnn_packed_isa() names: panel p, row k, column q VL + j holds
 * gate q of unit u = p VL + j, row k of [b; W_ih^T; W_hh^T], 0 when u >= H.
 * W_ih (4H, I), W_hh (4H, H), b (4H) as the LSTM kernels take them. */
static void FN(crnn_lstm_pack)(ptrdiff_t I, ptrdiff_t H, const REAL *W_ih,
                               const REAL *W_hh, const REAL *b, REAL *restrict P)
{
    const ptrdiff_t VL = FN(crnn_lstm_panel_units)(crnn_packed_isa());
    const ptrdiff_t K = 1 + I + H, width = 4 * VL;
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL) {
        REAL *panel = P + u0 / VL * K * width;
        for (int q = 0; q < 4; q++)
            for (ptrdiff_t j = 0; j < VL; j++) {
                /* column q VL + j of the panel: row q H + u of W_ih, W_hh, b */
                ptrdiff_t u = u0 + j, row = q * H + u;
                REAL *column = panel + q * VL + j;
                if (u >= H) {
                    for (ptrdiff_t k = 0; k < K; k++)
                        column[k * width] = 0;
                    continue;
                }
                column[0] = b[row];
                for (ptrdiff_t k = 0; k < I; k++)
                    column[(1 + k) * width] = W_ih[row * I + k];
                for (ptrdiff_t k = 0; k < H; k++)
                    column[(1 + I + k) * width] = W_hh[row * H + k];
            }
    }
}

#if CRNN_HAVE_PACKED

/* One ISA's kernel: a tile of mr <= MR rows by VL units (four accumulators
 * of VBYTES bytes per row, one per gate), then the cell's equations. */
#define CRNN_LSTM_FUSED_KERNEL(ISA, TARGET, VBYTES, MR)                                 \
typedef REAL FN(crnn_lstm_vec_##ISA) __attribute__((vector_size(VBYTES)));             \
                                                                                        \
__attribute__((target(TARGET), always_inline)) static inline void                      \
FN(crnn_lstm_tile_##ISA)(const int mr, const ptrdiff_t nu, ptrdiff_t I, ptrdiff_t H,  \
                         const REAL *x, const REAL *h_prev, const REAL *c_prev,         \
                         const REAL *P, REAL *h, REAL *c, REAL *gates)                  \
{                                                                                       \
    typedef FN(crnn_lstm_vec_##ISA) vec;                                                \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    const REAL *Pk = P + 4 * VL;                                                        \
    vec acc[MR][4], w[4];                                                               \
    REAL a[MR][4][VL] __attribute__((aligned(64)));                                     \
    CRNN_UNROLL for (int q = 0; q < 4; q++)                                             \
        memcpy(&w[q], P + q * VL, VBYTES);                                              \
    CRNN_UNROLL for (int r = 0; r < mr; r++)                                            \
        CRNN_UNROLL for (int q = 0; q < 4; q++)                                         \
            acc[r][q] = w[q];                                                           \
    for (ptrdiff_t k = 0; k < I; k++, Pk += 4 * VL) {                                   \
        CRNN_UNROLL for (int q = 0; q < 4; q++)                                         \
            memcpy(&w[q], Pk + q * VL, VBYTES);                                         \
        CRNN_UNROLL for (int r = 0; r < mr; r++) {                                      \
            /* a[r, gate q] += x[r, k] W_ih^T[k, gate q] */                             \
            REAL s = x[r * I + k];                                                      \
            CRNN_UNROLL for (int q = 0; q < 4; q++)                                     \
                acc[r][q] += s * w[q];                                                  \
        }                                                                               \
    }                                                                                   \
    for (ptrdiff_t k = 0; k < H; k++, Pk += 4 * VL) {                                   \
        CRNN_UNROLL for (int q = 0; q < 4; q++)                                         \
            memcpy(&w[q], Pk + q * VL, VBYTES);                                         \
        CRNN_UNROLL for (int r = 0; r < mr; r++) {                                      \
            /* a[r, gate q] += h_prev[r, k] W_hh^T[k, gate q] */                        \
            REAL s = h_prev[r * H + k];                                                 \
            CRNN_UNROLL for (int q = 0; q < 4; q++)                                     \
                acc[r][q] += s * w[q];                                                  \
        }                                                                               \
    }                                                                                   \
    /* The cell, from a copy in L1: a loop the compiler vectorises, as the  \
     * element-wise passes are. */                                                      \
    CRNN_UNROLL for (int r = 0; r < mr; r++)                                            \
        memcpy(a[r], acc[r], sizeof a[r]);                                              \
    for (int r = 0; r < mr; r++) {                                                      \
        /* The activated gates go over their pre-activations in a[r], then \
         * into ``gates``: one code path whether they are kept or not, so   \
         * that training and inference agree to the bit. */                             \
        REAL *h_r = h + r * H, *c_r = c + r * H;                                        \
        const REAL *c_prev_r = c_prev + r * H;                                          \
        if (nu == VL) {                                                                 \
            _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < VL; j++)                     \
                FN(crnn_lstm_cell)(a[r][0][j], a[r][1][j], a[r][2][j], a[r][3][j],      \
                                   c_prev_r[j], &a[r][0][j], &a[r][1][j], &a[r][2][j],  \
                                   &a[r][3][j], c_r + j, h_r + j);                      \
        } else {                                                                        \
            /* the last, partial panel: nu < VL units */                                \
            _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < nu; j++)                     \
                FN(crnn_lstm_cell)(a[r][0][j], a[r][1][j], a[r][2][j], a[r][3][j],      \
                                   c_prev_r[j], &a[r][0][j], &a[r][1][j], &a[r][2][j],  \
                                   &a[r][3][j], c_r + j, h_r + j);                      \
        }                                                                               \
        if (gates != NULL && nu == VL)                                                  \
            CRNN_UNROLL for (int q = 0; q < 4; q++)                                     \
                memcpy(gates + r * 4 * H + q * H, a[r][q], sizeof a[r][q]);             \
        else if (gates != NULL)                                                         \
            CRNN_UNROLL for (int q = 0; q < 4; q++)                                     \
                memcpy(gates + r * 4 * H + q * H, a[r][q], nu * sizeof(REAL));          \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* Any mr rows, in tiles of MR, 4, 2 and 1 rows, each compiled with its own  \
 * constant. */                                                                         \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_lstm_tile_rows_##ISA)(int mr, ptrdiff_t nu, ptrdiff_t I, ptrdiff_t H,          \
                              const REAL *x, const REAL *h_prev, const REAL *c_prev,    \
                              const REAL *P, REAL *h, REAL *c, REAL *gates)             \
{                                                                                       \
    while (mr > 0) {                                                                    \
        int rows = mr >= MR ? MR : mr >= 4 ? 4 : mr >= 2 ? 2 : 1;                       \
        if (rows == MR)                                                                 \
            FN(crnn_lstm_tile_##ISA)(MR, nu, I, H, x, h_prev, c_prev, P, h, c, gates);  \
        else if (rows == 4)                                                             \
            FN(crnn_lstm_tile_##ISA)(4, nu, I, H, x, h_prev, c_prev, P, h, c, gates);   \
        else if (rows == 2)                                                             \
            FN(crnn_lstm_tile_##ISA)(2, nu, I, H, x, h_prev, c_prev, P, h, c, gates);   \
        else                                                                            \
            FN(crnn_lstm_tile_##ISA)(1, nu, I, H, x, h_prev, c_prev, P, h, c, gates);   \
        x += rows * I;                                                                  \
        h_prev += rows * H;                                                             \
        c_prev += rows * H;                                                             \
        h += rows * H;                                                                  \
        c += rows * H;                                                                  \
        if (gates != NULL)                                                              \
            gates += rows * 4 * H;                                                      \
        mr -= rows;                                                                     \
    }                                                                                   \
}                                                                                       \
                                                                                        \
__attribute__((target(TARGET))) static void                                            \
FN(crnn_lstm_fused_step_##ISA)(ptrdiff_t M, ptrdiff_t I, ptrdiff_t H, const REAL *x,   \
                               const REAL *h_prev, const REAL *c_prev, const REAL *P,   \
                               REAL *h, REAL *c, REAL *gates)                           \
{                                                                                       \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    const ptrdiff_t K = 1 + I + H;                                                      \
    /* Panel by panel: each (K, 4 VL) panel is read from memory once per step \
     * and then from the cache by every block of rows. */                               \
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL) {                                          \
        ptrdiff_t nu = H - u0 < VL ? H - u0 : VL;                                       \
        FN(crnn_lstm_tile_rows_##ISA)((int)M, nu, I, H, x, h_prev,                      \
                                      c_prev + u0, P + u0 / VL * K * 4 * VL, h + u0,    \
                                      c + u0, gates != NULL ? gates + u0 : NULL);       \
    }                                                                                   \
}

CRNN_LSTM_FUSED_KERNEL(avx512, "avx512f", 64, 6)
CRNN_LSTM_FUSED_KERNEL(avx2, "avx2,fma", 32, 3)
#undef CRNN_LSTM_FUSED_KERNEL

#endif

/* One step for M rows: x (M, I), h_prev, c_prev (M, H) in; h, c (M, H) and
 * the activated gates (M, 4H; i, f, g, o) out (none when gates is NULL),
 * every array with rows one after the other; P from FN(crnn_lstm_pack) under the same kernel. h and c
 * must not overlap h_prev and c_prev. Needs crnn_packed_isa() > 0. */
static void FN(crnn_lstm_fused_step)(ptrdiff_t M, ptrdiff_t I, ptrdiff_t H, const REAL *x,
                                     const REAL *h_prev, const REAL *c_prev, const REAL *P,
                                     REAL *h, REAL *c, REAL *gates)
{
#if CRNN_HAVE_PACKED
    if (M <= 0)
        return;
    if (crnn_packed_isa() == CRNN_ISA_AVX512)
        FN(crnn_lstm_fused_step_avx512)(M, I, H, x, h_prev, c_prev, P, h, c, gates);
    else
        FN(crnn_lstm_fused_step_avx2)(M, I, H, x, h_prev, c_prev, P, h, c, gates);
#else
    (void)M; (void)I; (void)H; (void)x; (void)h_prev; (void)c_prev; (void)P;
    (void)h; (void)c; (void)gates;
#endif
}
