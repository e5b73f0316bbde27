/* Vectorizable exp, sigmoid and tanh for the kernels' element-wise passes.
 *
 * glibc's exp and tanh are scalar calls; the recurrent kernels apply them to
 * every gate of every step, where as calls they would cost as much as the
 * matrix products. These versions are branch-free inline code that the
 * compiler turns into SIMD loops, accurate to a few units in the last place
 * (tests/kernels/test_fastmath.py measures them against NumPy):
 *
 *   exp(x)     = 2^k exp(r), x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite), with
 *                exp(r) a degree-13 Taylor polynomial (float: degree 7),
 *                and 2^k built in the exponent bits;
 *   sigmoid(x) = 1 / (1 + exp(-x));
 *   tanh(x)    = x + x^3 P(x^2) / Q(x^2) for |x| < 0.625 (Cephes' rational
 *                approximation), sign(x) (1 - 2 / (exp(2|x|) + 1)) beyond;
 *                in float32 one rational function x P(x^2) / Q(x^2) over
 *                the whole range (crnn_tanhf).
 *
 * Arguments are clamped where the result has saturated, so nothing overflows
 * and NaN propagates.
 */
#ifndef CRNN_FASTMATH_H
#define CRNN_FASTMATH_H

#include <stdint.h>
#include <string.h>

static inline double crnn_exp(double x)
{
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93145751953125e-1;
    const double ln2_lo = 1.42860682030941723212e-6;
    const double shifter = 6755399441055744.0;   /* 1.5 * 2^52 */
    double t, k, r, p;
    int64_t bits;
    uint64_t scale_bits;
    x = x < -708.0 ? -708.0 : x;
    x = x > 708.0 ? 708.0 : x;
    t = x * log2e + shifter;        /* round(x log2 e) in the low bits of t */
    k = t - shifter;
    r = x - k * ln2_hi - k * ln2_lo;
    p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    memcpy(&bits, &t, sizeof bits);
    scale_bits = (uint64_t)(bits - INT64_C(0x4338000000000000) + 1023) << 52;
    memcpy(&t, &scale_bits, sizeof t);
    return p * t;
}

static inline float crnn_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f;
    const float ln2_lo = -2.12194440e-4f;
    const float shifter = 12582912.0f;            /* 1.5 * 2^23 */
    float t, k, r, p;
    int32_t bits;
    uint32_t scale_bits;
    x = x < -87.0f ? -87.0f : x;
    x = x > 87.0f ? 87.0f : x;
    t = x * log2e + shifter;
    k = t - shifter;
    r = x - k * ln2_hi - k * ln2_lo;
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    memcpy(&bits, &t, sizeof bits);
    scale_bits = (uint32_t)(bits - 0x4B400000 + 127) << 23;
    memcpy(&t, &scale_bits, sizeof t);
    return p * t;
}

static inline double crnn_sigmoid(double x) { return 1.0 / (1.0 + crnn_exp(-x)); }
static inline float crnn_sigmoidf(float x) { return 1.0f / (1.0f + crnn_expf(-x)); }

static inline double crnn_tanh(double x)
{
    double ax = x < 0 ? -x : x;
    double z = x * x;
    double small = x + x * z
        * ((-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z
           - 1.61468768441708447952e3)
        / (((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z
           + 4.84406305325125486048e3);
    double large = 1.0 - 2.0 / (crnn_exp(2.0 * ax) + 1.0);
    large = x < 0 ? -large : large;
    return ax < 0.625 ? small : large;
}

static inline float crnn_tanhf(float x)
{
    /* x P(x^2) / Q(x^2), P of degree 6 and Q of degree 3: the rational
     * approximation Eigen and ONNX Runtime's MLAS use, a third of the
     * operations of the exp form, within 5 float32 ulps (it is what makes
     * the fused LSTM step fast: docs/performance.md). Its argument is held
     * below 7.905, where the function is still below 1; beyond 9.011, where
     * tanh rounds to 1 in float32, the result is +-1 exactly. */
    const float bound = 7.90531110763549805f;
    float ax = x < 0 ? -x : x;
    float one = x < 0 ? -1.0f : 1.0f;
    float y, z, p, q;
    y = x < -bound ? -bound : x;
    y = y > bound ? bound : y;
    z = y * y;
    p = -2.76076847742355e-16f * z + 2.00018790482477e-13f;
    p = p * z - 8.60467152213735e-11f;
    p = p * z + 5.12229709037114e-08f;
    p = p * z + 1.48572235717979e-05f;
    p = p * z + 6.37261928875436e-04f;
    p = p * z + 4.89352455891786e-03f;
    q = 1.19825839466702e-06f * z + 1.18534705686654e-04f;
    q = q * z + 2.26843463243900e-03f;
    q = q * z + 4.89352518554385e-03f;
    y = y * p / q;
    return ax > 9.0109f ? one : y;
}

#endif
