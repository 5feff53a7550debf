/* Multi-step LIF with the rectangle surrogate, one pass over [T, N] (sw/lif_native.py), for
 * float32 (lif_forward_f32 / lif_backward_f32) and float64 (…_f64, used by gradcheck); the
 * BatchNorm passes of sw/batchnorm.py are at the end of the file.
 *
 * Bit-identical to sw/neurons.py's eager loops: compiled with -ffp-contract=off (no fused
 * multiply-add), so u = x + (tau * u_prev) * keep and g = g_s * w + (tau * g_next) * keep round
 * exactly as torch's addcmul does. Each call handles the columns [n0, n1) over all timesteps;
 * the caller splits N over threads. The inner loops run over a block of columns so that the
 * compiler vectorises them and the running membrane stays in L1.
 */
#include <stdint.h>

#define BLOCK 512

#define LIF_KERNELS(T_, SUFFIX)                                                              \
void lif_forward_##SUFFIX(const T_ *x, T_ *spikes, uint8_t *no_spike, uint8_t *window,        \
                          int64_t steps, int64_t n, int64_t n0, int64_t n1,                   \
                          T_ tau, T_ v_threshold, T_ half_width)                              \
{                                                                                             \
    T_ u[BLOCK], keep[BLOCK];                                                                 \
    for (int64_t b0 = n0; b0 < n1; b0 += BLOCK) {                                             \
        int64_t len = (n1 - b0 < BLOCK) ? n1 - b0 : BLOCK;                                    \
        for (int64_t t = 0; t < steps; t++) {                                                 \
            const T_ *xt = x + t * n + b0;                                                    \
            T_ *st = spikes + t * n + b0;                                                     \
            uint8_t *nt = no_spike + t * n + b0;                                              \
            uint8_t *wt = window + t * n + b0;                                                \
            for (int64_t j = 0; j < len; j++) {                                               \
                /* u[t] = x[t] + tau * u[t-1] * (1 - s[t-1]) */                               \
                T_ ut = (t == 0) ? xt[j] : xt[j] + (tau * u[j]) * keep[j];                    \
                T_ v = ut - v_threshold;                                                      \
                u[j] = ut;                                                                    \
                keep[j] = (ut <= v_threshold) ? (T_)1 : (T_)0;                                \
                st[j] = (ut > v_threshold) ? (T_)1 : (T_)0;                                   \
                nt[j] = (uint8_t)(ut <= v_threshold);                                         \
                wt[j] = (uint8_t)((v < 0 ? -v : v) < half_width);                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* grad_u[t] = window[t] * grad_s[t] + tau * no_spike[t] * grad_u[t+1], reverse time */       \
void lif_backward_##SUFFIX(const T_ *grad_spikes, const uint8_t *no_spike,                    \
                           const uint8_t *window, T_ *grad_u, int64_t steps, int64_t n,       \
                           int64_t n0, int64_t n1, T_ tau)                                    \
{                                                                                             \
    for (int64_t b0 = n0; b0 < n1; b0 += BLOCK) {                                             \
        int64_t len = (n1 - b0 < BLOCK) ? n1 - b0 : BLOCK;                                    \
        for (int64_t t = steps - 1; t >= 0; t--) {                                            \
            const T_ *gs = grad_spikes + t * n + b0;                                          \
            const uint8_t *nt = no_spike + t * n + b0;                                        \
            const uint8_t *wt = window + t * n + b0;                                          \
            T_ *gu = grad_u + t * n + b0;                                                     \
            const T_ *gnext = grad_u + (t + 1) * n + b0;                                      \
            if (t == steps - 1) {                                                             \
                for (int64_t j = 0; j < len; j++)                                             \
                    gu[j] = gs[j] * (T_)wt[j];                                                \
            } else {                                                                          \
                for (int64_t j = 0; j < len; j++)                                             \
                    gu[j] = gs[j] * (T_)wt[j] + (tau * gnext[j]) * (T_)nt[j];                 \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

LIF_KERNELS(float, f32)
LIF_KERNELS(double, f64)

/* BatchNorm over a [R, C, I] view of memory (sw/batchnorm.py): channel c of element
 * (r, c, i) at (r * C + c) * I + i. Channels-last frames are I = 1 (R = frames * pixels), NCHW
 * frames R = frames and I = pixels. Each call handles the rows [r0, r1); the caller splits R
 * over threads and gives each its own accumulators. Sums are accumulated in double, of the
 * values shifted by a per-channel constant `shift` (any value of the channel; it keeps the
 * one-pass sum of squares free of cancellation when |mean| >> std).
 */
#define BN_KERNELS(T_, SUFFIX)                                                                \
void bn_sums_##SUFFIX(const T_ *x, int64_t C, int64_t I, int64_t r0, int64_t r1,              \
                      const double *shift, double *sum, double *sumsq)                        \
{                                                                                             \
    for (int64_t r = r0; r < r1; r++) {                                                       \
        const T_ *xr = x + r * C * I;                                                         \
        if (I == 1) {                                                                         \
            for (int64_t c = 0; c < C; c++) {                                                 \
                double d = (double)xr[c] - shift[c];                                          \
                sum[c] += d;                                                                  \
                sumsq[c] += d * d;                                                            \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t c = 0; c < C; c++) {                                                 \
                const T_ *xc = xr + c * I;                                                    \
                double k = shift[c], s = 0, q = 0;                                            \
                _Pragma("omp simd reduction(+:s,q)")                                          \
                for (int64_t i = 0; i < I; i++) {                                             \
                    double d = (double)xc[i] - k;                                             \
                    s += d;                                                                   \
                    q += d * d;                                                               \
                }                                                                             \
                sum[c] += s;                                                                  \
                sumsq[c] += q;                                                                \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* y = x * scale[c] + bias[c] */                                                              \
void bn_apply_##SUFFIX(const T_ *x, T_ *y, int64_t C, int64_t I, int64_t r0, int64_t r1,       \
                       const T_ *scale, const T_ *bias)                                       \
{                                                                                             \
    for (int64_t r = r0; r < r1; r++) {                                                       \
        const T_ *xr = x + r * C * I;                                                         \
        T_ *yr = y + r * C * I;                                                               \
        if (I == 1) {                                                                         \
            for (int64_t c = 0; c < C; c++)                                                   \
                yr[c] = xr[c] * scale[c] + bias[c];                                           \
        } else {                                                                              \
            for (int64_t c = 0; c < C; c++) {                                                 \
                T_ a = scale[c], b = bias[c];                                                 \
                for (int64_t i = 0; i < I; i++)                                               \
                    yr[c * I + i] = xr[c * I + i] * a + b;                                    \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* sum of g and of g * (x - mean) per channel (the backward's two reductions) */              \
void bn_grad_sums_##SUFFIX(const T_ *g, const T_ *x, int64_t C, int64_t I, int64_t r0,        \
                           int64_t r1, const double *mean, double *sum_g, double *sum_gx)     \
{                                                                                             \
    for (int64_t r = r0; r < r1; r++) {                                                       \
        const T_ *gr = g + r * C * I;                                                         \
        const T_ *xr = x + r * C * I;                                                         \
        if (I == 1) {                                                                         \
            for (int64_t c = 0; c < C; c++) {                                                 \
                double gv = (double)gr[c];                                                    \
                sum_g[c] += gv;                                                               \
                sum_gx[c] += gv * ((double)xr[c] - mean[c]);                                  \
            }                                                                                 \
        } else {                                                                              \
            for (int64_t c = 0; c < C; c++) {                                                 \
                const T_ *gc = gr + c * I, *xc = xr + c * I;                                  \
                double m = mean[c], s = 0, q = 0;                                             \
                _Pragma("omp simd reduction(+:s,q)")                                          \
                for (int64_t i = 0; i < I; i++) {                                             \
                    double gv = (double)gc[i];                                                \
                    s += gv;                                                                  \
                    q += gv * ((double)xc[i] - m);                                            \
                }                                                                             \
                sum_g[c] += s;                                                                \
                sum_gx[c] += q;                                                               \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* dx = a[c] * (g - b[c] - (x - mean[c]) * k[c]); in place when dx == g */                    \
void bn_grad_input_##SUFFIX(const T_ *g, const T_ *x, T_ *dx, int64_t C, int64_t I,           \
                            int64_t r0, int64_t r1, const T_ *a, const T_ *b,                 \
                            const T_ *mean, const T_ *k)                                      \
{                                                                                             \
    for (int64_t r = r0; r < r1; r++) {                                                       \
        const T_ *gr = g + r * C * I, *xr = x + r * C * I;                                    \
        T_ *dr = dx + r * C * I;                                                              \
        if (I == 1) {                                                                         \
            for (int64_t c = 0; c < C; c++)                                                   \
                dr[c] = a[c] * (gr[c] - b[c] - (xr[c] - mean[c]) * k[c]);                     \
        } else {                                                                              \
            for (int64_t c = 0; c < C; c++) {                                                 \
                T_ ac = a[c], bc = b[c], mc = mean[c], kc = k[c];                             \
                for (int64_t i = 0; i < I; i++)                                               \
                    dr[c * I + i] = ac * (gr[c * I + i] - bc - (xr[c * I + i] - mc) * kc);    \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
}

BN_KERNELS(float, f32)
BN_KERNELS(double, f64)
