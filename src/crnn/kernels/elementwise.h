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

#include <stddef.h>
#include "fastmath.h"

#if defined(__x86_64__) && defined(__GLIBC__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12) || \
     (defined(__clang__) && __clang_major__ >= 14))
#define CRNN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CRNN_CLONES
#endif

/* Activation codes, as in activations.pxd. */
enum { CRNN_IDENTITY = 0, CRNN_TANH = 1, CRNN_SIGMOID = 2, CRNN_RELU = 3 };

#define REAL double
#define FN(name) name##_d
#define EXP crnn_exp
#define SIGMOID crnn_sigmoid
#define TANH crnn_tanh
#include "elementwise_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef SIGMOID
#undef TANH

#define REAL float
#define FN(name) name##_f
#define EXP crnn_expf
#define SIGMOID crnn_sigmoidf
#define TANH crnn_tanhf
#include "elementwise_impl.h"
#undef REAL
#undef FN
#undef EXP
#undef SIGMOID
#undef TANH

#endif
