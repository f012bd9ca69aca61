// The noise-schedule maps t <-> lambda of hso/schedules.py (NoiseSchedule.lambda_derivs / t_of_lambda), one
// point at a time, shared by the CPU loop and the CUDA kernel. The formulas are documented there; this file only
// mirrors them, including numpy.interp's conventions for the discrete table.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/mep_row.h"

namespace hso {

// Family codes, as hso.fast.registry passes them.
constexpr int FAMILY_VP_TABLE = 0;   // a: -, b: -, table: 0.5 log(alphas_cumprod) [n]
constexpr int FAMILY_VP_LINEAR = 1;  // a: beta_0, b: beta_1
constexpr int FAMILY_VP_COSINE = 2;  // a: s
constexpr int FAMILY_EDM = 3;        // a: log sigma_min, b: log sigma_max
constexpr int FAMILY_FLOW = 4;       // a: shift

struct ScheduleMap {
  int family;
  double a;
  double b;
  const double* table;  // FAMILY_VP_TABLE only
  int64_t n;            // table size
};

// grid point k of the discrete table, computed exactly as numpy's (arange(n) + 1.0) / n
HSO_HD double table_grid(int64_t k, int64_t n) { return (static_cast<double>(k) + 1.0) / static_cast<double>(n); }

// number of grid points <= t (numpy.searchsorted(grid, t, side="right"))
HSO_HD int64_t table_count_le(double t, int64_t n) {
  // grid is (k + 1) / n: start from the arithmetic guess and correct the rounding by a step or two
  double guess = ::floor(t * static_cast<double>(n));
  if (!(guess >= 0.0)) guess = 0.0;  // also catches NaN
  if (guess > static_cast<double>(n)) guess = static_cast<double>(n);
  int64_t cnt = static_cast<int64_t>(guess);
  while (cnt < n && table_grid(cnt, n) <= t) ++cnt;
  while (cnt > 0 && table_grid(cnt - 1, n) > t) --cnt;
  return cnt;
}

HSO_HD void vp_log_alpha(const ScheduleMap& s, double t, double& la, double& d1, double& d2) {
  if (s.family == FAMILY_VP_TABLE) {
    const int64_t n = s.n;
    const double* tb = s.table;
    const int64_t cnt = table_count_le(t, n);
    // value: numpy.interp (clamped outside the grid, linear inside)
    if (cnt == 0) {
      la = tb[0];
    } else if (cnt >= n) {
      la = tb[n - 1];
    } else {
      const int64_t j = cnt - 1;
      const double x0 = table_grid(j, n), x1 = table_grid(j + 1, n);
      la = (tb[j + 1] - tb[j]) / (x1 - x0) * (t - x0) + tb[j];
    }
    // slope of the cell holding t (right-continuous, the last cell at t = 1)
    int64_t k = cnt - 1;
    if (k < 0) k = 0;
    if (k > n - 2) k = n - 2;
    d1 = (tb[k + 1] - tb[k]) * static_cast<double>(n);
    d2 = 0.0;
  } else if (s.family == FAMILY_VP_LINEAR) {
    const double b0 = s.a, b1 = s.b;
    la = -0.25 * t * t * (b1 - b0) - 0.5 * t * b0;
    d1 = -0.5 * t * (b1 - b0) - 0.5 * b0;
    d2 = -0.5 * (b1 - b0);
  } else {  // FAMILY_VP_COSINE
    const double sc = s.a;
    const double c = M_PI / (2.0 * (1.0 + sc));
    const double u = (t + sc) * c;
    la = ::log(::cos(u)) - ::log(::cos(sc * c));
    d1 = -::tan(u) * c;
    const double sec = c / ::cos(u);
    d2 = -sec * sec;
  }
}

// (lambda, dlambda/dt, d2lambda/dt2) at t
HSO_HD void lambda_derivs(const ScheduleMap& s, double t, double& lam, double& d1, double& d2) {
  if (s.family == FAMILY_EDM) {
    lam = -(s.a + t * (s.b - s.a));
    d1 = -(s.b - s.a);
    d2 = 0.0;
    return;
  }
  if (s.family == FAMILY_FLOW) {
    lam = ::log1p(-t) - ::log(s.a * t);
    d1 = -1.0 / (1.0 - t) - 1.0 / t;
    d2 = 1.0 / (t * t) - 1.0 / ((1.0 - t) * (1.0 - t));
    return;
  }
  double la, l1, l2;
  vp_log_alpha(s, t, la, l1, l2);
  // lambda = L - log(1 - e^{2L}) / 2: dlambda/dL = 1/sigma^2, d2lambda/dL2 = 2 alpha^2 / sigma^4
  const double sig2 = -::expm1(2.0 * la);
  const double a2 = ::exp(2.0 * la);
  lam = la - 0.5 * ::log(sig2);
  d1 = l1 / sig2;
  d2 = l2 / sig2 + l1 * l1 * 2.0 * a2 / (sig2 * sig2);
}

HSO_HD double lambda_of_t(const ScheduleMap& s, double t) {
  double lam, d1, d2;
  lambda_derivs(s, t, lam, d1, d2);
  return lam;
}

HSO_HD double t_of_lambda(const ScheduleMap& s, double lam) {
  if (s.family == FAMILY_EDM) return (-lam - s.a) / (s.b - s.a);
  if (s.family == FAMILY_FLOW) return 1.0 / (1.0 + s.a * ::exp(lam));
  const double la = -0.5 * softplus(-2.0 * lam);  // log alpha(lambda) for VP
  if (s.family == FAMILY_VP_TABLE) {
    // numpy.interp(la, table[::-1], grid[::-1]): the table decreases, so search it from the end
    const int64_t n = s.n;
    const double* tb = s.table;
    // count of reversed-table entries <= la, i.e. entries k with tb[k] <= la, which form a suffix
    int64_t lo = 0, hi = n;  // first index with tb[idx] <= la
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (tb[mid] <= la) hi = mid; else lo = mid + 1;
    }
    const int64_t cnt = n - lo;  // entries <= la in the reversed (increasing) order
    if (cnt == 0) return table_grid(n - 1, n);
    if (cnt >= n) return table_grid(0, n);
    // reversed index j = cnt - 1 maps to k = n - cnt; next reversed point j + 1 maps to k - 1
    const int64_t k = n - cnt;
    const double x0 = tb[k], x1 = tb[k - 1];
    const double y0 = table_grid(k, n), y1 = table_grid(k - 1, n);
    return (y1 - y0) / (x1 - x0) * (la - x0) + y0;
  }
  if (s.family == FAMILY_VP_LINEAR) {
    const double b0 = s.a, b1 = s.b;
    const double m = -la;
    return 2.0 * m / (0.5 * b0 + ::sqrt(0.25 * b0 * b0 + (b1 - b0) * m));
  }
  const double sc = s.a;  // FAMILY_VP_COSINE
  const double c = M_PI / (2.0 * (1.0 + sc));
  return ::acos(::exp(la + ::log(::cos(sc * c)))) / c - sc;
}

}  // namespace hso
