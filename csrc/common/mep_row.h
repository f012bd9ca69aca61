// One candidate of the MEP kernel contract (value, gradient, tridiagonal Hessian), shared by the CPU loop and the
// CUDA kernel so that both backends compile the same arithmetic. The math is written once, in the docstring of
// hso/fast/reference.py (`mep_and_grad`); the names below follow it (h, m, q, Q1, Q2, S, C, E).
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define HSO_HD __host__ __device__ __forceinline__
#else
#define HSO_HD inline
#endif

namespace hso {

// lambda-space kinds, as in hso/schedules.py.
constexpr int KIND_VP = 0;
constexpr int KIND_VE = 1;
constexpr int KIND_FLOW = 2;

// isfinite for host and device code alike
HSO_HD bool is_finite(double x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// softplus(x) = log(1 + e^x) without overflow for large x and without losing log1p's accuracy for very negative x;
// the same branches as numpy.logaddexp(0, x), which the reference uses.
HSO_HD double softplus(double x) { return ::fmax(x, 0.0) + ::log1p(::exp(-::fabs(x))); }

// One row: lam [N1], grad [N1], diag [N1] or null, off [N1-1] or null; returns the value.
// Each output element is accumulated in the reference's order (the right-end term of interval i-1 first, then the
// left-end term of interval i), so agreement with the reference is limited by the transcendental functions only.
HSO_HD double mep_row(const double* lam, int64_t n1, int kind, double p, double* grad, double* diag, double* off) {
  const double c = p - 1.0;
  double value = 0.0;
  grad[0] = 0.0;
  if (diag) diag[0] = 0.0;
  for (int64_t i = 0; i + 1 < n1; ++i) {
    const double a = lam[i];
    const double b = lam[i + 1];
    const double h = b - a;
    const double m = 0.5 * (a + b);
    double q, q1, q2;
    // Four transcendental calls per interval instead of seven: softplus and sigmoid share one exp(-|x|), and sinh
    // and cosh of h/2 come from one expm1 (accurate for small gaps, where (e^x - e^-x)/2 would cancel).
    if (kind == KIND_VP) {
      const double x = 2.0 * m;
      const double ex = ::exp(-::fabs(x));
      const double s = (x >= 0.0) ? 1.0 / (1.0 + ex) : ex / (1.0 + ex);  // sigmoid(2m)
      q = -0.5 * c * (::fmax(x, 0.0) + ::log1p(ex));
      q1 = -c * s;
      q2 = -2.0 * c * s * (1.0 - s);
    } else if (kind == KIND_VE) {
      q = -c * m;
      q1 = -c;
      q2 = 0.0;
    } else {  // KIND_FLOW; the caller has rejected any other kind
      const double ex = ::exp(-::fabs(m));
      const double s = (m >= 0.0) ? 1.0 / (1.0 + ex) : ex / (1.0 + ex);  // sigmoid(m)
      q = -c * (::fmax(m, 0.0) + ::log1p(ex));
      q1 = -c * s;
      q2 = -c * s * (1.0 - s);
    }
    const double e = ::exp(q);
    const double em = ::expm1(0.5 * h);
    const double sh = em * (em + 2.0) / (2.0 * (em + 1.0));
    const double ch = 1.0 + em * em / (2.0 * (em + 1.0));
    value += 2.0 * sh * e;
    grad[i] += e * (-ch + sh * q1);
    grad[i + 1] = e * (ch + sh * q1);
    if (diag) {
      const double common = 0.5 * sh * (q1 * q1 + q2);
      diag[i] += e * (0.5 * sh - ch * q1 + common);
      diag[i + 1] = e * (0.5 * sh + ch * q1 + common);
      off[i] = e * (-0.5 * sh + common);
    }
  }
  return value;
}

}  // namespace hso
