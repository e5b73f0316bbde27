# cython: language_level=3
"""Fused float/double access to the C element-wise passes of ``elementwise.h``.

Private to crnn's kernel modules: the public ``.pxd`` files do not cimport
this one, so extensions that cimport crnn's kernels need no C header.
"""
from cython cimport floating

from crnn.kernels._activation_codes cimport RELU, SIGMOID, TANH


cdef extern from "elementwise.h" nogil:
    unsigned long crnn_subnormals_off()
    void crnn_subnormals_restore(unsigned long state)
    # The passes of each activation (elementwise.h): bias, backward, grad.
    void crnn_bias_identity_d(Py_ssize_t B, Py_ssize_t H, double* A, const double* b)
    void crnn_backward_identity_d(Py_ssize_t n, double* dA, const double* dh, const double* h)
    void crnn_grad_identity_d(Py_ssize_t n, double* dA, const double* h)
    void crnn_bias_identity_f(Py_ssize_t B, Py_ssize_t H, float* A, const float* b)
    void crnn_backward_identity_f(Py_ssize_t n, float* dA, const float* dh, const float* h)
    void crnn_grad_identity_f(Py_ssize_t n, float* dA, const float* h)
    void crnn_bias_tanh_d(Py_ssize_t B, Py_ssize_t H, double* A, const double* b)
    void crnn_backward_tanh_d(Py_ssize_t n, double* dA, const double* dh, const double* h)
    void crnn_grad_tanh_d(Py_ssize_t n, double* dA, const double* h)
    void crnn_bias_tanh_f(Py_ssize_t B, Py_ssize_t H, float* A, const float* b)
    void crnn_backward_tanh_f(Py_ssize_t n, float* dA, const float* dh, const float* h)
    void crnn_grad_tanh_f(Py_ssize_t n, float* dA, const float* h)
    void crnn_bias_sigmoid_d(Py_ssize_t B, Py_ssize_t H, double* A, const double* b)
    void crnn_backward_sigmoid_d(Py_ssize_t n, double* dA, const double* dh, const double* h)
    void crnn_grad_sigmoid_d(Py_ssize_t n, double* dA, const double* h)
    void crnn_bias_sigmoid_f(Py_ssize_t B, Py_ssize_t H, float* A, const float* b)
    void crnn_backward_sigmoid_f(Py_ssize_t n, float* dA, const float* dh, const float* h)
    void crnn_grad_sigmoid_f(Py_ssize_t n, float* dA, const float* h)
    void crnn_bias_relu_d(Py_ssize_t B, Py_ssize_t H, double* A, const double* b)
    void crnn_backward_relu_d(Py_ssize_t n, double* dA, const double* dh, const double* h)
    void crnn_grad_relu_d(Py_ssize_t n, double* dA, const double* h)
    void crnn_bias_relu_f(Py_ssize_t B, Py_ssize_t H, float* A, const float* b)
    void crnn_backward_relu_f(Py_ssize_t n, float* dA, const float* dh, const float* h)
    void crnn_grad_relu_f(Py_ssize_t n, float* dA, const float* h)
    void crnn_lstm_rows_d(Py_ssize_t B, Py_ssize_t H, double* a, const double* b,
                          const double* c_prev, double* h, double* c)
    void crnn_lstm_rows_f(Py_ssize_t B, Py_ssize_t H, float* a, const float* b,
                          const float* c_prev, float* h, float* c)
    void crnn_lstm_rows_backward_d(Py_ssize_t B, Py_ssize_t H, double* ga,
                                   const double* c_t, const double* c_prev,
                                   const double* dh_above, const double* dh, double* dc)
    void crnn_lstm_rows_backward_f(Py_ssize_t B, Py_ssize_t H, float* ga,
                                   const float* c_t, const float* c_prev,
                                   const float* dh_above, const float* dh, float* dc)
    void crnn_gru_rows_d(Py_ssize_t B, Py_ssize_t H, double* a, const double* w,
                         const double* b, const double* b_hn, const double* h_prev,
                         double* hn, double* h)
    void crnn_gru_rows_f(Py_ssize_t B, Py_ssize_t H, float* a, const float* w,
                         const float* b, const float* b_hn, const float* h_prev,
                         float* hn, float* h)
    void crnn_gru_rows_backward_d(Py_ssize_t B, Py_ssize_t H, double* ga, double* gh,
                                  const double* hn, const double* h_prev,
                                  const double* dh_above, double* dh)
    void crnn_gru_rows_backward_f(Py_ssize_t B, Py_ssize_t H, float* ga, float* gh,
                                  const float* hn, const float* h_prev,
                                  const float* dh_above, float* dh)
    void crnn_adam_d(Py_ssize_t n, double* w, const double* g, double* m, double* v,
                     double step, double b1, double b2, double eps)
    void crnn_adam_f(Py_ssize_t n, float* w, const float* g, float* m, float* v,
                     float step, float b1, float b2, float eps)


# The one place where an activation code (_activation_codes.pxd) picks its C pass.

cdef inline void bias_activation(Py_ssize_t B, Py_ssize_t H, floating* A,
                                 const floating* b, int g) noexcept nogil:
    """A[i, j] = g(A[i, j] + b[j]) for the (B, H) row-major block A."""
    if floating is float:
        if g == TANH:
            crnn_bias_tanh_f(B, H, A, b)
        elif g == SIGMOID:
            crnn_bias_sigmoid_f(B, H, A, b)
        elif g == RELU:
            crnn_bias_relu_f(B, H, A, b)
        else:
            crnn_bias_identity_f(B, H, A, b)
    else:
        if g == TANH:
            crnn_bias_tanh_d(B, H, A, b)
        elif g == SIGMOID:
            crnn_bias_sigmoid_d(B, H, A, b)
        elif g == RELU:
            crnn_bias_relu_d(B, H, A, b)
        else:
            crnn_bias_identity_d(B, H, A, b)


cdef inline void activation_backward(Py_ssize_t n, floating* dA, const floating* dh,
                                     const floating* h, int g) noexcept nogil:
    """dA = (dA + dh) * g'(a), in place, with g' taken from the output h = g(a)."""
    if floating is float:
        if g == TANH:
            crnn_backward_tanh_f(n, dA, dh, h)
        elif g == SIGMOID:
            crnn_backward_sigmoid_f(n, dA, dh, h)
        elif g == RELU:
            crnn_backward_relu_f(n, dA, dh, h)
        else:
            crnn_backward_identity_f(n, dA, dh, h)
    else:
        if g == TANH:
            crnn_backward_tanh_d(n, dA, dh, h)
        elif g == SIGMOID:
            crnn_backward_sigmoid_d(n, dA, dh, h)
        elif g == RELU:
            crnn_backward_relu_d(n, dA, dh, h)
        else:
            crnn_backward_identity_d(n, dA, dh, h)


cdef inline void activation_grad(Py_ssize_t n, floating* dA, const floating* h,
                                 int g) noexcept nogil:
    """dA = dA * g'(a), in place, with g' taken from the output h = g(a)."""
    if floating is float:
        if g == TANH:
            crnn_grad_tanh_f(n, dA, h)
        elif g == SIGMOID:
            crnn_grad_sigmoid_f(n, dA, h)
        elif g == RELU:
            crnn_grad_relu_f(n, dA, h)
        else:
            crnn_grad_identity_f(n, dA, h)
    else:
        if g == TANH:
            crnn_grad_tanh_d(n, dA, h)
        elif g == SIGMOID:
            crnn_grad_sigmoid_d(n, dA, h)
        elif g == RELU:
            crnn_grad_relu_d(n, dA, h)
        else:
            crnn_grad_identity_d(n, dA, h)


# Each pass below runs over a block of B consecutive rows of one step: gate
# rows of G = 4H (LSTM) or 3H (GRU) entries, state rows of H.

cdef inline void lstm_rows(Py_ssize_t B, Py_ssize_t H, floating* a, const floating* b,
                           const floating* c_prev, floating* h,
                           floating* c) noexcept nogil:
    """Gate activations of B LSTM rows, in place in ``a`` (B, 4H), and the new
    c and h (B, H) from c_prev (B, H)."""
    if floating is float:
        crnn_lstm_rows_f(B, H, a, b, c_prev, h, c)
    else:
        crnn_lstm_rows_d(B, H, a, b, c_prev, h, c)


cdef inline void lstm_rows_backward(Py_ssize_t B, Py_ssize_t H, floating* ga,
                                    const floating* c_t, const floating* c_prev,
                                    const floating* dh_above, const floating* dh,
                                    floating* dc) noexcept nogil:
    """Gate gradients of B LSTM rows, in place in ``ga`` (B, 4H); dc (B, H)
    becomes dE/dc_prev."""
    if floating is float:
        crnn_lstm_rows_backward_f(B, H, ga, c_t, c_prev, dh_above, dh, dc)
    else:
        crnn_lstm_rows_backward_d(B, H, ga, c_t, c_prev, dh_above, dh, dc)


cdef inline void gru_rows(Py_ssize_t B, Py_ssize_t H, floating* a, const floating* w,
                          const floating* b, const floating* b_hn,
                          const floating* h_prev, floating* hn,
                          floating* h) noexcept nogil:
    """Gates of B GRU rows, in place in ``a`` (B, 3H), from the recurrent
    products ``w`` (B, 3H); writes hn and h (B, H)."""
    if floating is float:
        crnn_gru_rows_f(B, H, a, w, b, b_hn, h_prev, hn, h)
    else:
        crnn_gru_rows_d(B, H, a, w, b, b_hn, h_prev, hn, h)


cdef inline void gru_rows_backward(Py_ssize_t B, Py_ssize_t H, floating* ga,
                                   floating* gh, const floating* hn,
                                   const floating* h_prev, const floating* dh_above,
                                   floating* dh) noexcept nogil:
    """Gate gradients of B GRU rows (input side in place in ``ga``, recurrent
    side into ``gh``, both (B, 3H)); dh (B, H) becomes the direct part of
    dE/dh_prev."""
    if floating is float:
        crnn_gru_rows_backward_f(B, H, ga, gh, hn, h_prev, dh_above, dh)
    else:
        crnn_gru_rows_backward_d(B, H, ga, gh, hn, h_prev, dh_above, dh)


cdef inline void adam(Py_ssize_t n, floating* w, const floating* g, floating* m,
                      floating* v, double step, double b1, double b2,
                      double eps) noexcept nogil:
    """One Adam step over n parameters, in place in w, m and v."""
    if floating is float:
        crnn_adam_f(n, w, g, m, v, <float>step, <float>b1, <float>b2, <float>eps)
    else:
        crnn_adam_d(n, w, g, m, v, step, b1, b2, eps)
