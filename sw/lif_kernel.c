/* Multi-step LIF with the rectangle surrogate, one pass over [T, N] (sw/lif_native.py), for
 * float32 (lif_forward_f32 / lif_backward_f32) and float64 (…_f64, used by gradcheck).
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
