/* Template of the fused LSTM and GRU steps (see fused.h); included once per
 * floating type with REAL, FN, SIGMOID and TANH defined. No include guard. */

/* The units of one panel under kernel ``isa``: one vector of REAL. */
static inline ptrdiff_t FN(crnn_fused_panel_units)(int isa)
{
    return (ptrdiff_t)((isa == CRNN_ISA_AVX512 ? 64 : 32) / sizeof(REAL));
}

/* The values of one panel: VL units times, for the LSTM, 4 gates over the
 * 1 + I + H rows of [b; W_ih^T; W_hh^T]; for the GRU, the 4 biases and 3
 * gates over I + H rows. */
static inline ptrdiff_t FN(crnn_fused_panel_size)(int gru, ptrdiff_t VL, ptrdiff_t I,
                                                  ptrdiff_t H)
{
    return VL * (gru ? 4 + 3 * (I + H) : 4 * (1 + I + H));
}

/* P = [b; W_ih^T; W_hh^T] in panels of VL units (fused.h), for the kernel
 * crnn_packed_isa() names: panel p, row k, column q VL + j holds gate q of
 * unit u = p VL + j, row k of [b; W_ih^T; W_hh^T], 0 when u >= H.
 * W_ih (4H, I), W_hh (4H, H), b (4H) as the LSTM kernels take them. */
static void FN(crnn_lstm_pack)(ptrdiff_t I, ptrdiff_t H, const REAL *W_ih,
                               const REAL *W_hh, const REAL *b, REAL *restrict P)
{
    const ptrdiff_t VL = FN(crnn_fused_panel_units)(crnn_packed_isa());
    const ptrdiff_t K = 1 + I + H, width = 4 * VL;
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL) {
        REAL *panel = P + u0 / VL * FN(crnn_fused_panel_size)(0, VL, I, H);
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

/* The GRU's panels (fused.h): row 0 holds [b_r, b_z, b_in, b_hn] of the
 * panel's units (4 VL values), then I rows of [W_ir, W_iz, W_in]^T and H
 * rows of [W_hr, W_hz, W_hn]^T (3 VL values each); 0 for units >= H.
 * W_ih (3H, I), W_hh (3H, H), b (3H), b_hn (H) as the GRU kernels take them. */
static void FN(crnn_gru_pack)(ptrdiff_t I, ptrdiff_t H, const REAL *W_ih,
                              const REAL *W_hh, const REAL *b, const REAL *b_hn,
                              REAL *restrict P)
{
    const ptrdiff_t VL = FN(crnn_fused_panel_units)(crnn_packed_isa());
    const ptrdiff_t width = 3 * VL;
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL) {
        REAL *panel = P + u0 / VL * FN(crnn_fused_panel_size)(1, VL, I, H);
        REAL *weights = panel + 4 * VL;
        for (ptrdiff_t j = 0; j < VL; j++) {
            ptrdiff_t u = u0 + j;
            panel[3 * VL + j] = u < H ? b_hn[u] : 0;
        }
        for (int q = 0; q < 3; q++)
            for (ptrdiff_t j = 0; j < VL; j++) {
                /* column q VL + j of the weight rows: row q H + u of W_ih, W_hh */
                ptrdiff_t u = u0 + j, row = q * H + u;
                REAL *column = weights + q * VL + j;
                panel[q * VL + j] = u < H ? b[row] : 0;
                for (ptrdiff_t k = 0; k < I; k++)
                    column[k * width] = u < H ? W_ih[row * I + k] : 0;
                for (ptrdiff_t k = 0; k < H; k++)
                    column[(I + k) * width] = u < H ? W_hh[row * H + k] : 0;
            }
    }
}

#if CRNN_HAVE_PACKED

/* One ISA's kernel: a tile of mr <= MR rows by VL units, four accumulators
 * of VBYTES bytes per row, then the cell's equations. ``gru`` (a constant
 * in every call) picks the cell: the LSTM's accumulators are its gates
 * i, f, g, o, each fed by both products from panel rows of 4 vectors; the
 * GRU's are r, z, n's input side and n's recurrent side, from panel rows of
 * 3 vectors: the input rows feed the first three, the recurrent rows r, z
 * and the fourth. Rows of the arrays are one after the other; every pointer
 * is at the first row, and the tile's units start at u0. */
#define CRNN_FUSED_KERNEL(ISA, TARGET, VBYTES, MR)                                      \
typedef REAL FN(crnn_fused_vec_##ISA) __attribute__((vector_size(VBYTES)));            \
                                                                                        \
/* The cell on the nu <= VL units of one row, from its four accumulators  \
 * a (4, VL), the activated gates written over them. Out of line, so that  \
 * every tile height runs the very same instructions on every row (the     \
 * results do not depend on how the rows were grouped). */                              \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_lstm_cells_##ISA)(ptrdiff_t nu, REAL a[4][VBYTES / sizeof(REAL)],              \
                          const REAL *restrict c_prev, REAL *restrict h,                \
                          REAL *restrict c)                                             \
{                                                                                       \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    if (nu == VL) {                                                                     \
        _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < VL; j++)                         \
            FN(crnn_lstm_cell)(a[0][j], a[1][j], a[2][j], a[3][j], c_prev[j], &a[0][j],  \
                               &a[1][j], &a[2][j], &a[3][j], c + j, h + j);             \
    } else {                                                                            \
        /* the last, partial panel */                                                   \
        _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < nu; j++)                         \
            FN(crnn_lstm_cell)(a[0][j], a[1][j], a[2][j], a[3][j], c_prev[j], &a[0][j],  \
                               &a[1][j], &a[2][j], &a[3][j], c + j, h + j);             \
    }                                                                                   \
}                                                                                       \
                                                                                        \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_gru_cells_##ISA)(ptrdiff_t nu, REAL a[4][VBYTES / sizeof(REAL)],               \
                         const REAL *restrict h_prev, REAL *restrict h)                 \
{                                                                                       \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    if (nu == VL) {                                                                     \
        _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < VL; j++)                         \
            FN(crnn_gru_cell)(a[0][j], a[1][j], a[2][j], a[3][j], h_prev[j], &a[0][j],   \
                              &a[1][j], &a[2][j], h + j);                               \
    } else {                                                                            \
        _Pragma("GCC ivdep") for (ptrdiff_t j = 0; j < nu; j++)                         \
            FN(crnn_gru_cell)(a[0][j], a[1][j], a[2][j], a[3][j], h_prev[j], &a[0][j],   \
                              &a[1][j], &a[2][j], h + j);                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
__attribute__((target(TARGET), always_inline)) static inline void                      \
FN(crnn_fused_tile_##ISA)(const int mr, const int gru, ptrdiff_t u0, ptrdiff_t nu,     \
                          ptrdiff_t I, ptrdiff_t H, const REAL *x, const REAL *h_prev,  \
                          const REAL *c_prev, const REAL *P, REAL *h, REAL *c,          \
                          REAL *gates, REAL *hn)                                        \
{                                                                                       \
    typedef FN(crnn_fused_vec_##ISA) vec;                                               \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    const int NW = gru ? 3 : 4;              /* vectors per panel row */                \
    const int NG = gru ? 3 : 4;              /* gates per row of ``gates`` */           \
    const REAL *Pk = P + (gru ? 4 : NW) * VL;                                           \
    vec acc[MR][4], w[4];                                                               \
    REAL a[MR][4][VL] __attribute__((aligned(64)));                                     \
    CRNN_UNROLL for (int q = 0; q < 4; q++)                                             \
        memcpy(&w[q], P + q * VL, VBYTES);                                              \
    CRNN_UNROLL for (int r = 0; r < mr; r++)                                            \
        CRNN_UNROLL for (int q = 0; q < 4; q++)                                         \
            acc[r][q] = w[q];                                                           \
    for (ptrdiff_t k = 0; k < I; k++, Pk += NW * VL) {                                  \
        CRNN_UNROLL for (int q = 0; q < NW; q++)                                        \
            memcpy(&w[q], Pk + q * VL, VBYTES);                                         \
        CRNN_UNROLL for (int r = 0; r < mr; r++) {                                      \
            /* a[r, q] += x[r, k] W_ih^T[k, gate q] */                                  \
            REAL s = x[r * I + k];                                                      \
            CRNN_UNROLL for (int q = 0; q < NW; q++)                                    \
                acc[r][q] += s * w[q];                                                  \
        }                                                                               \
    }                                                                                   \
    for (ptrdiff_t k = 0; k < H; k++, Pk += NW * VL) {                                  \
        CRNN_UNROLL for (int q = 0; q < NW; q++)                                        \
            memcpy(&w[q], Pk + q * VL, VBYTES);                                         \
        CRNN_UNROLL for (int r = 0; r < mr; r++) {                                      \
            /* a[r, q] += h_prev[r, k] W_hh^T[k, gate q] (the GRU's W_hn: into \
             * the fourth accumulator) */                                               \
            REAL s = h_prev[r * H + k];                                                 \
            CRNN_UNROLL for (int q = 0; q < NW; q++)                                    \
                acc[r][gru && q == 2 ? 3 : q] += s * w[q];                              \
        }                                                                               \
    }                                                                                   \
    /* The cell, row by row from a copy in L1. The activated gates go over  \
     * their pre-activations in a[r], then into ``gates``: one code path     \
     * whether they are kept or not, so that training and inference agree to \
     * the bit. */                                                                      \
    CRNN_UNROLL for (int r = 0; r < mr; r++)                                            \
        memcpy(a[r], acc[r], sizeof a[r]);                                              \
    for (int r = 0; r < mr; r++) {                                                      \
        if (gru)                                                                        \
            FN(crnn_gru_cells_##ISA)(nu, a[r], h_prev + r * H + u0, h + r * H + u0);    \
        else                                                                            \
            FN(crnn_lstm_cells_##ISA)(nu, a[r], c_prev + r * H + u0, h + r * H + u0,    \
                                      c + r * H + u0);                                  \
        if (gates != NULL && nu == VL)                                                  \
            CRNN_UNROLL for (int q = 0; q < NG; q++)                                    \
                memcpy(gates + (r * NG + q) * H + u0, a[r][q], sizeof a[r][q]);         \
        else if (gates != NULL)                                                         \
            CRNN_UNROLL for (int q = 0; q < NG; q++)                                    \
                memcpy(gates + (r * NG + q) * H + u0, a[r][q], nu * sizeof(REAL));      \
        if (hn != NULL)        /* the GRU's W_hn h_prev + b_hn */                       \
            memcpy(hn + r * H + u0, a[r][3], nu * sizeof(REAL));                        \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* Any mr rows, in tiles of MR, 4, 2 and 1 rows, each compiled with its own  \
 * constant. */                                                                         \
__attribute__((target(TARGET), always_inline)) static inline void                      \
FN(crnn_fused_rows_##ISA)(int mr, const int gru, ptrdiff_t u0, ptrdiff_t nu,           \
                          ptrdiff_t I, ptrdiff_t H, const REAL *x, const REAL *h_prev,  \
                          const REAL *c_prev, const REAL *P, REAL *h, REAL *c,          \
                          REAL *gates, REAL *hn)                                        \
{                                                                                       \
    const ptrdiff_t G = (gru ? 3 : 4) * H;                                              \
    while (mr > 0) {                                                                    \
        int rows = mr >= MR ? MR : mr >= 4 ? 4 : mr >= 2 ? 2 : 1;                       \
        if (rows == MR)                                                                 \
            FN(crnn_fused_tile_##ISA)(MR, gru, u0, nu, I, H, x, h_prev, c_prev, P, h,   \
                                      c, gates, hn);                                    \
        else if (rows == 4)                                                             \
            FN(crnn_fused_tile_##ISA)(4, gru, u0, nu, I, H, x, h_prev, c_prev, P, h,    \
                                      c, gates, hn);                                    \
        else if (rows == 2)                                                             \
            FN(crnn_fused_tile_##ISA)(2, gru, u0, nu, I, H, x, h_prev, c_prev, P, h,    \
                                      c, gates, hn);                                    \
        else                                                                            \
            FN(crnn_fused_tile_##ISA)(1, gru, u0, nu, I, H, x, h_prev, c_prev, P, h,    \
                                      c, gates, hn);                                    \
        x += rows * I;                                                                  \
        h_prev += rows * H;                                                             \
        h += rows * H;                                                                  \
        if (!gru) {                                                                     \
            c_prev += rows * H;                                                         \
            c += rows * H;                                                              \
        }                                                                               \
        if (gates != NULL)                                                              \
            gates += rows * G;                                                          \
        if (hn != NULL)                                                                 \
            hn += rows * H;                                                             \
        mr -= rows;                                                                     \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* Panel by panel: each panel is read from memory once per step and then    \
 * from the cache by every block of rows. */                                            \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_lstm_fused_step_##ISA)(ptrdiff_t M, ptrdiff_t I, ptrdiff_t H, const REAL *x,   \
                               const REAL *h_prev, const REAL *c_prev, const REAL *P,   \
                               REAL *h, REAL *c, REAL *gates)                           \
{                                                                                       \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL)                                            \
        FN(crnn_fused_rows_##ISA)((int)M, 0, u0, H - u0 < VL ? H - u0 : VL, I, H, x,    \
                                  h_prev, c_prev,                                       \
                                  P + u0 / VL * FN(crnn_fused_panel_size)(0, VL, I, H), \
                                  h, c, gates, NULL);                                   \
}                                                                                       \
                                                                                        \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_gru_fused_step_##ISA)(ptrdiff_t M, ptrdiff_t I, ptrdiff_t H, const REAL *x,    \
                              const REAL *h_prev, const REAL *P, REAL *h, REAL *gates,  \
                              REAL *hn)                                                 \
{                                                                                       \
    enum { VL = VBYTES / sizeof(REAL) };                                                \
    for (ptrdiff_t u0 = 0; u0 < H; u0 += VL)                                            \
        FN(crnn_fused_rows_##ISA)((int)M, 1, u0, H - u0 < VL ? H - u0 : VL, I, H, x,    \
                                  h_prev, NULL,                                         \
                                  P + u0 / VL * FN(crnn_fused_panel_size)(1, VL, I, H), \
                                  h, NULL, gates, hn);                                  \
}

CRNN_FUSED_KERNEL(avx512, "avx512f", 64, 6)
CRNN_FUSED_KERNEL(avx2, "avx2,fma", 32, 3)
#undef CRNN_FUSED_KERNEL

#endif

/* One LSTM step for M rows: x (M, I), h_prev, c_prev (M, H) in; h, c (M, H)
 * and the activated gates (M, 4H; i, f, g, o) out (none when gates is
 * NULL), every array with rows one after the other; P from
 * FN(crnn_lstm_pack) under the same kernel. h and c must not overlap h_prev
 * and c_prev. Needs crnn_packed_isa() > 0. */
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

/* One GRU step for M rows: x (M, I), h_prev (M, H) in; h (M, H), the
 * activated gates (M, 3H; r, z, n) and hn = W_hn h_prev + b_hn (M, H) out
 * (gates and hn: none when NULL, which they are together); P from
 * FN(crnn_gru_pack) under the same kernel. h must not overlap h_prev. Needs
 * crnn_packed_isa() > 0. */
static void FN(crnn_gru_fused_step)(ptrdiff_t M, ptrdiff_t I, ptrdiff_t H, const REAL *x,
                                    const REAL *h_prev, const REAL *P, REAL *h,
                                    REAL *gates, REAL *hn)
{
#if CRNN_HAVE_PACKED
    if (M <= 0)
        return;
    if (crnn_packed_isa() == CRNN_ISA_AVX512)
        FN(crnn_gru_fused_step_avx512)(M, I, H, x, h_prev, P, h, gates, hn);
    else
        FN(crnn_gru_fused_step_avx2)(M, I, H, x, h_prev, P, h, gates, hn);
#else
    (void)M; (void)I; (void)H; (void)x; (void)h_prev; (void)P; (void)h; (void)gates;
    (void)hn;
#endif
}
