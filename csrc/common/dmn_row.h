// One candidate of the DM-NonUniform objective (value and exact gradient in lambda), shared by the CPU loop and the
// fused lower level. The math, the step plan and the numerics are written once, in the docstring of
// hso/fast/reference_dmn.py (`dmn_and_grad`); the names below follow it (E, h, H0..H2, J, T, c, w, g, G).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/mep_row.h"

namespace hso {

// doubles of scratch one row needs (E, w, d log w, c, dvalue/dw; J and its partials per step)
HSO_HD int64_t dmn_work_size(int64_t n1) { return 17 * n1; }

HSO_HD double sign_of(double x) { return (x > 0.0) ? 1.0 : ((x < 0.0) ? -1.0 : 0.0); }

// Taylor coefficients of H1(h) / h^2 = sum_i h^i / ((i + 2) i!) and H2(h) / h^3 = sum_i h^i / ((i + 3) i!)
struct PhiSeries {
  double c1[30];
  double c2[30];
  HSO_HD PhiSeries() {
    double fact = 1.0;  // i!
    for (int i = 0; i < 30; ++i) {
      c1[i] = 1.0 / (static_cast<double>(i + 2) * fact);
      c2[i] = 1.0 / (static_cast<double>(i + 3) * fact);
      fact *= static_cast<double>(i + 1);
    }
  }
};

// The coefficients a row uses: on the host computed once per process (the same operations, so the same bits: 60
// divisions per objective evaluation saved); device code builds them per call, in registers.
#ifdef __CUDA_ARCH__
#define HSO_PHI_SERIES(name) const PhiSeries name
#else
inline const PhiSeries& phi_series_host() {
  static const PhiSeries q;
  return q;
}
#define HSO_PHI_SERIES(name) const PhiSeries& name = phi_series_host()
#endif

// (e^h, H0, H1, H2): the Taylor series below |h| = 1.5 (30 terms, Horner), the closed form beyond
HSO_HD void phi_integrals(const PhiSeries& q, double h, double& eh, double& h0, double& h1, double& h2) {
  eh = ::exp(h);
  h0 = ::expm1(h);
  if (::fabs(h) < 1.5) {
    double s1 = q.c1[29], s2 = q.c2[29];
    for (int i = 28; i >= 0; --i) {
      s1 = s1 * h + q.c1[i];
      s2 = s2 * h + q.c2[i];
    }
    h1 = h * h * s1;
    h2 = h * h * h * s2;
  } else {
    h1 = h * eh - h0;
    h2 = h * h * eh - 2.0 * h1;
  }
}

// the spec's default truncNum for N intervals
HSO_HD int64_t dmn_default_trunc(int64_t n_int) { return n_int <= 7 ? 3 : 0; }

// step order: 1 for the first and last steps, 2 next to them, 3 inside (the lower order wins where rules overlap)
HSO_HD int dmn_order(int64_t s, int64_t n_int) {
  if (s == 0 || s == n_int - 1) return 1;
  if (s == 1 || s == n_int - 2) return 2;
  return 3;
}

// coefficients J_j of an order-k step (k = 2: hs = {a, h}; k = 3: {a, b, h}) and their partials in a, b, h
HSO_HD void dmn_coeffs(const PhiSeries& q, int k, double E, const double* hs, double* J, double* da, double* db,
                       double* dh) {
  double eh, h0, h1, h2;
  if (k == 2) {
    const double a = hs[0], h = hs[1];
    phi_integrals(q, h, eh, h0, h1, h2);
    J[0] = -E * h1 / a;
    J[1] = E * (h1 / a + h0);
    da[0] = E * h1 / (a * a);
    da[1] = -da[0];
    db[0] = db[1] = 0.0;
    dh[0] = -E * h * eh / a;
    dh[1] = E * eh * (h + a) / a;
    return;
  }
  const double a = hs[0], b = hs[1], h = hs[2];
  phi_integrals(q, h, eh, h0, h1, h2);
  const double ab = a + b;
  const double d0 = a * ab, d1 = a * b, d2 = b * ab;
  J[0] = E * (h2 + b * h1) / d0;
  J[1] = -E * (h2 + ab * h1) / d1;
  J[2] = E * (h2 + (2.0 * b + a) * h1 + b * ab * h0) / d2;
  da[0] = -J[0] * (1.0 / a + 1.0 / ab);
  da[1] = -E * h1 / d1 - J[1] / a;
  da[2] = E * (h1 + b * h0) / d2 - J[2] / ab;
  db[0] = E * h1 / d0 - J[0] / ab;
  db[1] = -E * h1 / d1 - J[1] / b;
  db[2] = E * (2.0 * h1 + (a + 2.0 * b) * h0) / d2 - J[2] * (1.0 / b + 1.0 / ab);
  const double heh = h * eh;
  dh[0] = E * heh * (h + b) / d0;
  dh[1] = -E * heh * (h + ab) / d1;
  dh[2] = E * eh * (h + b) * (h + ab) / d2;
}

// log sigma(lambda) and its derivative for a lambda-space kind (hso.schedules.log_sigma_of_lambda)
HSO_HD void log_sigma_derivs(double lam, int kind, double& ls, double& dls) {
  if (kind == KIND_VP) {
    ls = -0.5 * softplus(2.0 * lam);
    dls = -0.5 * (1.0 + ::tanh(lam));  // -sigmoid(2 lambda)
  } else if (kind == KIND_VE) {
    ls = -lam;
    dls = -1.0;
  } else {  // KIND_FLOW
    ls = -softplus(lam);
    dls = -0.5 * (1.0 + ::tanh(0.5 * lam));  // -sigmoid(lambda)
  }
}

// One row: lam [n1] increasing, grad [n1] (written), work [dmn_work_size(n1)]; tau = truncNum (>= 0). Returns the
// value. Two passes over the steps: the per-node sums c first (their signs are the adjoints of later steps), then
// value and gradient in reverse mode.
HSO_HD double dmn_row(const double* lam, int64_t n1, int kind, double p, int64_t tau, double* grad, double* work) {
  const int64_t N = n1 - 1;
  double* E = work;
  double* w = E + n1;
  double* dlogw = w + n1;
  double* c = dlogw + n1;
  double* gw = c + n1;
  for (int64_t m = 0; m < n1; ++m) {
    double ls, dls;
    log_sigma_derivs(lam[m], kind, ls, dls);
    E[m] = ::exp(lam[m]);
    w[m] = ::exp((p - 1.0) * ls - lam[m]);
    dlogw[m] = (p - 1.0) * dls - 1.0;
    c[m] = 0.0;
    gw[m] = 0.0;
    grad[m] = 0.0;
  }
  // pass 1: the coefficients of every higher-order step (kept for pass 2), and the per-node sums of the later ones
  HSO_PHI_SERIES(q);
  double* coef = gw + n1;  // [N][12]: J, da, db, dh of step s at 12 s
  double hs[3];
  for (int64_t s = 1; s + 1 < N; ++s) {
    const int k = dmn_order(s, N);
    const int64_t n0 = s - k + 1;
    double* J = coef + 12 * s;
    for (int i = 0; i < k; ++i) hs[i] = lam[n0 + i + 1] - lam[n0 + i];
    dmn_coeffs(q, k, E[s], hs, J, J + 3, J + 6, J + 9);
    if (s < tau) continue;  // root-sum-square step
    for (int j = 0; j < k; ++j) c[n0 + j] += w[n0 + j] * J[j];
  }
  double value = 0.0;
  for (int64_t m = 0; m < n1; ++m) value += ::fabs(c[m]);
  // pass 2: every step's value and adjoints
  for (int64_t s = 0; s < N; ++s) {
    const int k = dmn_order(s, N);
    if (k == 1) {
      const double J0 = E[s] * ::expm1(lam[s + 1] - lam[s]);  // E_{s+1} - E_s without cancellation
      const double T = w[s] * J0;
      value += ::fabs(T);
      const double g = sign_of(T);
      gw[s] += g * J0;
      const double G = g * w[s];
      grad[s + 1] += G * E[s + 1];
      grad[s] -= G * E[s];
      continue;
    }
    const int64_t n0 = s - k + 1;
    const double* J = coef + 12 * s;
    const double* da = J + 3;
    const double* db = J + 6;
    const double* dh = J + 9;
    const bool rss_mode = s < tau;
    double rss = 0.0;
    if (rss_mode) {
      for (int j = 0; j < k; ++j) rss += (w[n0 + j] * J[j]) * (w[n0 + j] * J[j]);
      rss = ::sqrt(rss);
      value += rss;
    }
    const double inv = (rss > 0.0) ? 1.0 / rss : 0.0;
    double gE = 0.0, ga = 0.0, gb = 0.0, gh = 0.0;
    for (int j = 0; j < k; ++j) {
      const double gj = rss_mode ? w[n0 + j] * J[j] * inv : sign_of(c[n0 + j]);
      gw[n0 + j] += gj * J[j];
      const double Gj = gj * w[n0 + j];
      gE += Gj * J[j];
      ga += Gj * da[j];
      gh += Gj * dh[j];
      gb += Gj * db[j];
    }
    grad[s] += gE - gh;
    grad[s + 1] += gh;
    if (k == 2) {
      grad[s] += ga;
      grad[s - 1] -= ga;
    } else {
      grad[s] += gb;
      grad[s - 1] += ga - gb;
      grad[s - 2] -= ga;
    }
  }
  for (int64_t m = 0; m < n1; ++m) grad[m] += gw[m] * w[m] * dlogw[m];
  return value;
}

}  // namespace hso
