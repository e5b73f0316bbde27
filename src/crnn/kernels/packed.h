/* The per-step recurrent product with its weight packed once per pass.
 *
 *     C(M, N) = A(M, K) @ W(K, N) + beta * C           (row-major, beta 0 or 1)
 *
 * A recurrence multiplies the same W (W_hh^T forward, W_hh backward) by a new
 * A (the states, or the gate gradients) at every step. A BLAS call repacks
 * both operands each time, a sizeable part of each large product (figures:
 * docs/performance.md, "The packed per-step product"). Here W is rearranged
 * once, by crnn_pack_*, into panels of NR = 128 bytes of columns (32 floats,
 * 16 doubles), each panel (K, NR) contiguous and zero-padded past N; every
 * step then reads it in place. C is computed in tiles of MR rows by NR columns held in vector
 * registers, over blocks of KC = 128 rows of the panel (16 KiB, which stays
 * in the L1 cache while every row block of A passes over it):
 *
 *     for each block k0 .. k0+KC of K, each panel p, each block of MR rows:
 *         C[rows, panel p] (+)= A[rows, k0:k0+KC] @ P[p][k0:k0+KC]
 *
 * Two kernels, chosen for the running CPU when first used: AVX-512 (MR = 8,
 * two 64-byte vectors per panel row) and AVX2 with FMA (MR = 3, four 32-byte
 * vectors), both from one source through GCC/Clang vector extensions. Where
 * neither exists (another architecture or compiler), crnn_packed_isa()
 * returns 0 and callers use BLAS; the packed layout is the same for both
 * kernels, so a workspace packed once serves either.
 */
#ifndef CRNN_PACKED_H
#define CRNN_PACKED_H

#include <stddef.h>
#include <string.h>

#define CRNN_PANEL_BYTES 128
#define CRNN_KC 128

enum { CRNN_ISA_NONE = 0, CRNN_ISA_AVX2 = 1, CRNN_ISA_AVX512 = 2 };

/* A packed (K, N) matrix holds K * (N rounded up to a multiple of 32)
 * elements of either type (whole float panels; pairs of double panels). */
static inline ptrdiff_t crnn_packed_size(ptrdiff_t K, ptrdiff_t N)
{
    return K * ((N + 31) / 32 * 32);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRNN_HAVE_PACKED 1
/* The tile's loops over rows and vectors must unroll completely, so that its
 * accumulators live in registers. */
#define CRNN_UNROLL _Pragma("GCC unroll 16")
#else
#define CRNN_HAVE_PACKED 0
#endif

/* The widest kernel this CPU runs, or a lower one forced by
 * crnn_packed_set_isa (tests use that to run the AVX2 kernel on an AVX-512
 * machine). */
static int crnn_packed_isa_override = -1;

static inline int crnn_packed_cpu_isa(void)
{
#if CRNN_HAVE_PACKED
    static int isa = -1;
    if (isa < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f"))
            isa = CRNN_ISA_AVX512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            isa = CRNN_ISA_AVX2;
        else
            isa = CRNN_ISA_NONE;
    }
    return isa;
#else
    return CRNN_ISA_NONE;
#endif
}

static inline int crnn_packed_isa(void)
{
    int cpu = crnn_packed_cpu_isa();
    return crnn_packed_isa_override >= 0 && crnn_packed_isa_override < cpu
        ? crnn_packed_isa_override : cpu;
}

/* Use at most ``isa`` (CRNN_ISA_*; -1 restores the CPU's best). Returns the
 * kernel now in use. */
static inline int crnn_packed_set_isa(int isa)
{
    crnn_packed_isa_override = isa;
    return crnn_packed_isa();
}

#define REAL double
#define FN(name) name##_d
#include "packed_impl.h"
#undef REAL
#undef FN

#define REAL float
#define FN(name) name##_f
#include "packed_impl.h"
#undef REAL
#undef FN

#endif
