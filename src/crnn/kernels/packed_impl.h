/* Template of the packed product (see packed.h); included once per floating
 * type with REAL and FN defined. No include guard. */

/* Columns of a panel: 128 bytes. */
#define NR ((ptrdiff_t)(CRNN_PANEL_BYTES / sizeof(REAL)))

/* P = W(K, N) in panels: P[(p K + k) NR + j] = W(k, p NR + j), 0 past N.
 * W(k, n) is W[k sk + n sn]: (sk, sn) = (N, 1) for a row-major (K, N) matrix,
 * (1, K) for the transpose of a row-major (N, K) one. Blocks of 16 rows keep
 * the reads and the writes each within a few cache lines for either stride. */
static void FN(crnn_pack)(ptrdiff_t K, ptrdiff_t N, const REAL *W, ptrdiff_t sk,
                          ptrdiff_t sn, REAL *restrict P)
{
    for (ptrdiff_t n0 = 0; n0 < N; n0 += NR) {
        REAL *panel = P + n0 * K;
        ptrdiff_t nr = N - n0 < NR ? N - n0 : NR;
        for (ptrdiff_t k0 = 0; k0 < K; k0 += 16) {
            ptrdiff_t k1 = K - k0 < 16 ? K : k0 + 16;
            if (sn == 1) {
                for (ptrdiff_t k = k0; k < k1; k++)
                    for (ptrdiff_t j = 0; j < nr; j++)
                        panel[k * NR + j] = W[k * sk + n0 + j];
            } else {
                for (ptrdiff_t j = 0; j < nr; j++)
                    for (ptrdiff_t k = k0; k < k1; k++)
                        panel[k * NR + j] = W[k * sk + (n0 + j) * sn];
            }
            for (ptrdiff_t k = k0; k < k1; k++)
                for (ptrdiff_t j = nr; j < NR; j++)
                    panel[k * NR + j] = 0;
        }
    }
}

#if CRNN_HAVE_PACKED

/* One ISA's kernel: a tile of mr <= MR rows by NR columns, NV vectors of
 * VBYTES bytes per row, accumulated in registers over kc rows of a panel. */
#define CRNN_PACKED_KERNEL(ISA, TARGET, VBYTES, NV, MR)                                 \
typedef REAL FN(crnn_vec_##ISA) __attribute__((vector_size(VBYTES)));                  \
                                                                                        \
__attribute__((target(TARGET), always_inline)) static inline void                      \
FN(crnn_tile_##ISA)(const int mr, ptrdiff_t kc, const REAL *A, ptrdiff_t lda,          \
                    const REAL *P, int accumulate, REAL *C, ptrdiff_t ldc)             \
{                                                                                       \
    typedef FN(crnn_vec_##ISA) vec;                                                     \
    const ptrdiff_t L = VBYTES / sizeof(REAL);                                          \
    vec acc[MR][NV];                                                                    \
    CRNN_UNROLL for (int i = 0; i < mr; i++)                                            \
        CRNN_UNROLL for (int v = 0; v < NV; v++) {                                      \
            if (accumulate)                                                             \
                memcpy(&acc[i][v], C + i * ldc + v * L, VBYTES);                        \
            else                                                                        \
                acc[i][v] = (vec){0};                                                   \
        }                                                                               \
    for (ptrdiff_t k = 0; k < kc; k++) {                                                \
        vec w[NV];                                                                      \
        CRNN_UNROLL for (int v = 0; v < NV; v++)                                        \
            memcpy(&w[v], P + k * NR + v * L, VBYTES);                                  \
        CRNN_UNROLL for (int i = 0; i < mr; i++) {                                      \
            /* C[i, :] += A[i, k] W[k, :] */                                            \
            REAL a = A[i * lda + k];                                                    \
            CRNN_UNROLL for (int v = 0; v < NV; v++)                                    \
                acc[i][v] += a * w[v];                                                  \
        }                                                                               \
    }                                                                                   \
    CRNN_UNROLL for (int i = 0; i < mr; i++)                                            \
        CRNN_UNROLL for (int v = 0; v < NV; v++)                                        \
            memcpy(C + i * ldc + v * L, &acc[i][v], VBYTES);                            \
}                                                                                       \
                                                                                        \
/* The tile for any mr in 1 .. MR, in tiles of MR, 4, 2 and 1 rows, each  \
 * compiled with its own constant. */                                                   \
__attribute__((target(TARGET), noinline)) static void                                  \
FN(crnn_tile_rows_##ISA)(int mr, ptrdiff_t kc, const REAL *A, ptrdiff_t lda,           \
                         const REAL *P, int accumulate, REAL *C, ptrdiff_t ldc)        \
{                                                                                       \
    while (mr > 0) {                                                                    \
        int rows = mr >= MR ? MR : MR > 4 && mr >= 4 ? 4 : mr >= 2 ? 2 : 1;             \
        if (rows == MR)                                                                 \
            FN(crnn_tile_##ISA)(MR, kc, A, lda, P, accumulate, C, ldc);                 \
        else if (rows == 4)                                                             \
            FN(crnn_tile_##ISA)(4, kc, A, lda, P, accumulate, C, ldc);                  \
        else if (rows == 2)                                                             \
            FN(crnn_tile_##ISA)(2, kc, A, lda, P, accumulate, C, ldc);                  \
        else                                                                            \
            FN(crnn_tile_##ISA)(1, kc, A, lda, P, accumulate, C, ldc);                  \
        A += rows * lda;                                                                \
        C += rows * ldc;                                                                \
        mr -= rows;                                                                     \
    }                                                                                   \
}                                                                                       \
                                                                                        \
__attribute__((target(TARGET))) static void                                            \
FN(crnn_packed_gemm_##ISA)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const REAL *A,       \
                           ptrdiff_t lda, const REAL *P, int beta, REAL *C,             \
                           ptrdiff_t ldc)                                               \
{                                                                                       \
    REAL edge[MR * CRNN_PANEL_BYTES / sizeof(REAL)];                                    \
    for (ptrdiff_t n0 = 0; n0 < N; n0 += NR) {                                          \
        ptrdiff_t nr = N - n0 < NR ? N - n0 : NR;                                       \
        for (ptrdiff_t k0 = 0; k0 < K; k0 += CRNN_KC) {                                 \
            ptrdiff_t kc = K - k0 < CRNN_KC ? K - k0 : CRNN_KC;                         \
            int accumulate = k0 > 0 || beta;                                            \
            const REAL *Pk = P + n0 * K + k0 * NR;                                      \
            for (ptrdiff_t i0 = 0; i0 < M; i0 += MR) {                                  \
                int mr = M - i0 < MR ? (int)(M - i0) : MR;                              \
                const REAL *Ai = A + i0 * lda + k0;                                     \
                REAL *Ci = C + i0 * ldc + n0;                                           \
                if (nr == NR) {                                                         \
                    FN(crnn_tile_rows_##ISA)(mr, kc, Ai, lda, Pk, accumulate, Ci, ldc); \
                    continue;                                                           \
                }                                                                       \
                /* The last, partial panel: through a full-width tile. */               \
                for (int i = 0; i < mr; i++)                                            \
                    for (ptrdiff_t j = 0; j < NR; j++)                                  \
                        edge[i * NR + j] = accumulate && j < nr ? Ci[i * ldc + j] : 0;  \
                FN(crnn_tile_rows_##ISA)(mr, kc, Ai, lda, Pk, 1, edge, NR);             \
                for (int i = 0; i < mr; i++)                                            \
                    for (ptrdiff_t j = 0; j < nr; j++)                                  \
                        Ci[i * ldc + j] = edge[i * NR + j];                             \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}

CRNN_PACKED_KERNEL(avx512, "avx512f", 64, 2, 8)
CRNN_PACKED_KERNEL(avx2, "avx2,fma", 32, 4, 3)
#undef CRNN_PACKED_KERNEL

#endif

/* C(M, N) = A(M, K) @ W(K, N) + beta C, beta 0 or 1, with W packed by
 * FN(crnn_pack). Needs crnn_packed_isa() > 0. */
static void FN(crnn_packed_gemm)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const REAL *A,
                                 ptrdiff_t lda, const REAL *P, int beta, REAL *C,
                                 ptrdiff_t ldc)
{
#if CRNN_HAVE_PACKED
    if (crnn_packed_isa() == CRNN_ISA_AVX512)
        FN(crnn_packed_gemm_avx512)(M, N, K, A, lda, P, beta, C, ldc);
    else
        FN(crnn_packed_gemm_avx2)(M, N, K, A, lda, P, beta, C, ldc);
#else
    (void)M; (void)N; (void)K; (void)A; (void)lda; (void)P; (void)beta; (void)C; (void)ldc;
#endif
}

#undef NR
