/* The element-wise passes of the recurrent kernels, in C.
 *
 * Each pass is written once, in elementwise_impl.h, and compiled here for
 * double (suffix _d) and float (suffix _f). On x86-64 with GCC or Clang and
 * glibc, every pass is also compiled for AVX2+FMA and AVX-512 and the best
 * version for the running CPU is chosen when the module loads
 * (target_clones), so that one portable wheel runs the wide vector units
 * where they exist.
 */
#ifndef CRNN_ELEMENTWISE_H
#define CRNN_ELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include "fastmath.h"

#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12) || \
     (defined(__clang__) && __clang_major__ >= 14))
#define CRNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CRNN_CLONES
#endif

/* The one-row bodies of the block passes: always inlined, so that each
 * clone compiles them for its own instruction set. */
#if defined(__GNUC__) || defined(__clang__)
#define CRNN_ROW static inline __attribute__((always_inline))
#else
#define CRNN_ROW static inline
#endif

/* Subnormal numbers (below 1.2e-38 in float32, 2.2e-308 in float64) take a
 * slow microcode path on x86 and ARM, and gradients backpropagated through
 * long sequences decay into that range (figures: docs/performance.md,
 * "Subnormals"); so the kernels flush them. crnn_subnormals_off() makes the
 * calling thread flush subnormal results and inputs to zero (x86: MXCSR
 * FTZ|DAZ; AArch64: FPCR.FZ) and returns the previous state, which
 * crnn_subnormals_restore() puts back, so that the caller's floating-point
 * environment is unchanged after a kernel. */
#if defined(__x86_64__) || defined(_M_X64) || (defined(__i386__) && defined(__SSE2__))
#include <xmmintrin.h>
static inline unsigned long crnn_subnormals_off(void)
{
    unsigned int state = _mm_getcsr();
    _mm_setcsr(state | 0x8040u);        /* FTZ (bit 15) | DAZ (bit 6) */
    return state;
}
static inline void crnn_subnormals_restore(unsigned long state)
{
    _mm_setcsr((unsigned int)state);
}
#elif defined(__aarch64__) && defined(__GNUC__)
static inline unsigned long crnn_subnormals_off(void)
{
    unsigned long state;
    __asm__ __volatile__("mrs %0, fpcr" : "=r"(state));
    __asm__ __volatile__("msr fpcr, %0" : : "r"(state | (1ul << 24)));  /* FZ */
    return state;
}
static inline void crnn_subnormals_restore(unsigned long state)
{
    __asm__ __volatile__("msr fpcr, %0" : : "r"(state));
}
#else
static inline unsigned long crnn_subnormals_off(void) { return 0; }
static inline void crnn_subnormals_restore(unsigned long state) { (void)state; }
#endif

/* The activations, each written once: G(x) = g(x), and DG(d, h) = d g'(a),
 * BPTT through h = g(a) with g' written with the output h (the table of
 * _activation_codes.pxd). elementwise_impl.h compiles three passes of each:
 * crnn_bias_<g>, crnn_backward_<g> and crnn_grad_<g>. Their codes live only
 * in _activation_codes.pxd: no pass takes one, _elementwise.pxd picks the
 * pass of each code. */
#define CRNN_IDENTITY_G(x) (x)
#define CRNN_IDENTITY_DG(d, h) (d)
#define CRNN_TANH_G(x) TANH(x)
#define CRNN_TANH_DG(d, h) ((d) * (1 - (h) * (h)))
#define CRNN_SIGMOID_G(x) SIGMOID(x)
#define CRNN_SIGMOID_DG(d, h) ((d) * ((h) * (1 - (h))))
#define CRNN_RELU_G(x) ((x) > 0 ? (x) : 0)
#define CRNN_RELU_DG(d, h) ((h) > 0 ? (d) : 0)

#define REAL double
#define FN(name) name##_d
#define EXP crnn_exp
#define SIGMOID crnn_sigmoid
#define TANH crnn_tanh
#define SQRT sqrt
#include "elementwise_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef SIGMOID
#undef TANH
#undef SQRT

#define REAL float
#define FN(name) name##_f
#define EXP crnn_expf
#define SIGMOID crnn_sigmoidf
#define TANH crnn_tanhf
#define SQRT sqrtf
#include "elementwise_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef SIGMOID
#undef TANH
#undef SQRT

#endif
