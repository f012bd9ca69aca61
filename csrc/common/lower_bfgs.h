// The lower level for objectives without an exact Hessian (the DM-NonUniform bound), and the dispatcher that both
// backends call. Same primal active-set method as the MEP row (hso/fast/reference_lower.py), with the Hessian in t
// replaced by the reference's BFGS approximation: the first iteration takes the identity scaled so that no point
// moves by more than 0.02, later ones update it with the last step (skipped when the curvature s.y is not
// positive). That matrix is dense, so the working-set system is reduced to the free blocks by summing its entries
// and solved by Cholesky (the reference solves the full KKT system; the solution is the same). The eigenvalue shift
// that keeps it positive definite is the reference's: one Cholesky of H - 1e-8 * (Gershgorin bound) proves it is
// zero, and only otherwise do cyclic Jacobi sweeps find the extreme eigenvalues.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/dmn_row.h"
#include "common/lower_row.h"

namespace hso {

// doubles of scratch one BFGS candidate needs: 22 vectors, three n x n matrices, the objective's scratch
HSO_HD int64_t lower_work_size_bfgs(int64_t n_int) {
  const int64_t n1 = n_int + 1;
  return 22 * n1 + 3 * n1 * n1 + dmn_work_size(n1) + 8;
}

HSO_HD int64_t lower_work_size_for(const LowerParams& P) {
  return P.objective == OBJECTIVE_MEP ? lower_work_size_mep(P.n_int) : lower_work_size_bfgs(P.n_int);
}

// in-place Cholesky of the n x n matrix a (lower triangle); false when a pivot is not positive
HSO_HD bool cholesky(double* a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[j * n + j];
    for (int64_t k = 0; k < j; ++k) d -= a[j * n + k] * a[j * n + k];
    if (!(d > 0.0)) return false;
    d = ::sqrt(d);
    a[j * n + j] = d;
    for (int64_t i = j + 1; i < n; ++i) {
      double v = a[i * n + j];
      for (int64_t k = 0; k < j; ++k) v -= a[i * n + k] * a[j * n + k];
      a[i * n + j] = v / d;
    }
  }
  return true;
}

// solve L L^T x = b in place (b becomes x) with the factor from `cholesky`
HSO_HD void cholesky_solve(const double* l, int64_t n, double* b) {
  for (int64_t i = 0; i < n; ++i) {
    double v = b[i];
    for (int64_t k = 0; k < i; ++k) v -= l[i * n + k] * b[k];
    b[i] = v / l[i * n + i];
  }
  for (int64_t i = n - 1; i >= 0; --i) {
    double v = b[i];
    for (int64_t k = i + 1; k < n; ++k) v -= l[k * n + i] * b[k];
    b[i] = v / l[i * n + i];
  }
}

// smallest and largest eigenvalue of the symmetric n x n matrix a (destroyed) by cyclic Jacobi rotations
HSO_HD void jacobi_extreme_eigenvalues(double* a, int64_t n, double& ev_min, double& ev_max) {
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0, diag = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      diag += a[i * n + i] * a[i * n + i];
      for (int64_t j = i + 1; j < n; ++j) off += a[i * n + j] * a[i * n + j];
    }
    if (off <= 1e-32 * diag || off == 0.0) break;
    for (int64_t p = 0; p < n; ++p) {
      for (int64_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double tt = sign_of(theta) / (::fabs(theta) + ::sqrt(theta * theta + 1.0));
        const double tn = (theta == 0.0) ? 1.0 : tt;
        const double cs = 1.0 / ::sqrt(tn * tn + 1.0), sn = tn * cs;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = cs * akp - sn * akq;
          a[k * n + q] = sn * akp + cs * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = cs * apk - sn * aqk;
          a[q * n + k] = sn * apk + cs * aqk;
        }
      }
    }
  }
  ev_min = ev_max = a[0];
  for (int64_t i = 1; i < n; ++i) {
    ev_min = ::fmin(ev_min, a[i * n + i]);
    ev_max = ::fmax(ev_max, a[i * n + i]);
  }
}

// hp = h + shift I with the reference's shift max(0, 1e-8 max|eig| - min eig); tmp is n x n scratch
HSO_HD void positive_definite_copy(const double* h, int64_t n, double* hp, double* tmp) {
  double gersh = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    double row = 0.0;
    for (int64_t j = 0; j < n; ++j) row += ::fabs(h[i * n + j]);
    gersh = ::fmax(gersh, row);
  }
  for (int64_t k = 0; k < n * n; ++k) tmp[k] = h[k];
  for (int64_t i = 0; i < n; ++i) tmp[i * n + i] -= 1e-8 * gersh;
  double shift = 0.0;
  if (!cholesky(tmp, n)) {
    for (int64_t k = 0; k < n * n; ++k) tmp[k] = h[k];
    double ev_min, ev_max;
    jacobi_extreme_eigenvalues(tmp, n, ev_min, ev_max);
    const double scale = ::fmax(::fmax(::fabs(ev_min), ::fabs(ev_max)), 1e-300);
    shift = ::fmax(0.0, 1e-8 * scale - ev_min);
  }
  for (int64_t k = 0; k < n * n; ++k) hp[k] = h[k];
  for (int64_t i = 0; i < n; ++i) hp[i * n + i] += shift;
}

// the objective of the BFGS path in lambda: value, gradient (scratch `work`)
HSO_HD double bfgs_objective(const LowerParams& P, const double* lam, double* grad, double* work) {
  return dmn_row(lam, P.n_int + 1, P.kind, P.p, P.trunc, grad, work);
}

// the objective at a trial schedule, with lambda and its t-derivatives (into the trial buffers)
struct BfgsTrial {
  const ScheduleMap& s;
  const LowerParams& P;
  double *lam, *d1, *d2, *gl, *work;
  HSO_HD double operator()(const double* t) const {
    for (int64_t k = 0; k <= P.n_int; ++k) lambda_derivs(s, t[k], lam[k], d1[k], d2[k]);
    return bfgs_objective(P, lam, gl, work);
  }
};

// The BFGS lower level for one candidate; outputs as `lower_row_mep`.
HSO_HD int64_t lower_row_bfgs(const ScheduleMap& s, const LowerParams& P, double rho, double t_eps, double t_max,
                              double* t, double* lam_out, double* objective, double* penalty, bool* feasible_out,
                              double* work) {
  const int64_t N = P.n_int, n1 = N + 1, n = N - 1;  // interior points 1..N-1 are the variables
  double* lam = lam_out;
  double* v = work;
  double* ts = v;  v += n1;   // start
  double* d1 = v;  v += n1;   // lambda'(t)
  double* d2 = v;  v += n1;   // lambda''(t) (unused by BFGS)
  double* gl = v;  v += n1;   // dJ/dlambda
  double* g = v;   v += n1;   // dJ/dt
  double* dt = v;  v += n1;   // step, dt[0] = dt[N] = 0
  double* off = v; v += n1;   // block offsets
  double* c = v;   v += n1;   // slacks [N]
  double* mu = v;  v += n1;   // multipliers [N]
  double* wk = v;  v += n1;   // working set 0/1 [N]
  double* trial = v; v += n1;
  double* r = v;   v += n1;   // residual g + H dt
  double* bid = v; v += n1;   // block start of each point
  double* blk = v; v += n1;   // free-block index of each point, -1 for fixed blocks
  double* rb = v;  v += n1;   // reduced rhs / solution
  double* tlam = v; v += n1;
  double* td1 = v; v += n1;
  double* td2 = v; v += n1;
  double* tgl = v; v += n1;
  double* gprev = v; v += n1;
  double* tprev = v; v += n1;
  double* hs = v;  v += n1;   // H s of the BFGS update
  const int64_t nn = (n > 0 ? n : 1) * (n > 0 ? n : 1);
  double* H = v;   v += nn;   // BFGS matrix over the interior, row-major n x n
  double* Hp = v;  v += nn;   // shifted copy
  double* R = v;   v += nn;   // reduced system / scratch
  double* ow = v;             // objective scratch
  const double d = P.gap;

  init_row(s, P, rho, t_eps, t_max, t);
  const bool feasible = feasible_start(t, N, d);
  for (int64_t k = 0; k < n1; ++k) ts[k] = t[k];
  *feasible_out = feasible;
  int64_t iters = 0;

  if (feasible && n > 0) {
    for (int64_t i = 0; i < N; ++i) wk[i] = 0.0;
    bool done = false;
    for (int64_t k = 0; k < n1; ++k) lambda_derivs(s, t[k], lam[k], d1[k], d2[k]);
    double f = bfgs_objective(P, lam, gl, ow);
    for (int64_t it = 0; it < P.maxiter && !done; ++it) {
      double gmax = 0.0;
      for (int64_t j = 1; j < N; ++j) {
        g[j] = gl[j] * d1[j];
        gmax = ::fmax(gmax, ::fabs(g[j]));
      }
      if (it == 0) {  // scaled identity: the first step moves no point by more than 0.02 in t
        for (int64_t k = 0; k < n * n; ++k) H[k] = 0.0;
        for (int64_t i = 0; i < n; ++i) H[i * n + i] = gmax / 0.02;
      } else {  // BFGS update with the last step, where its curvature is positive
        double sy = 0.0, ss = 0.0, yy = 0.0;
        for (int64_t j = 1; j < N; ++j) {
          const double sj = t[j] - tprev[j], yj = g[j] - gprev[j];
          sy += sj * yj;
          ss += sj * sj;
          yy += yj * yj;
        }
        if (sy > 1e-12 * ::sqrt(ss) * ::sqrt(yy)) {
          double shs = 0.0;
          for (int64_t i = 0; i < n; ++i) {
            double acc = 0.0;
            for (int64_t j = 0; j < n; ++j) acc += H[i * n + j] * (t[j + 1] - tprev[j + 1]);
            hs[i] = acc;
            shs += (t[i + 1] - tprev[i + 1]) * acc;
          }
          for (int64_t i = 0; i < n; ++i) {
            const double yi = g[i + 1] - gprev[i + 1];
            for (int64_t j = 0; j < n; ++j) {
              const double yj = g[j + 1] - gprev[j + 1];
              H[i * n + j] += yi * yj / sy - hs[i] * hs[j] / shs;
            }
          }
        }
      }
      for (int64_t j = 1; j < N; ++j) {
        gprev[j] = g[j];
        tprev[j] = t[j];
      }
      positive_definite_copy(H, n, Hp, R);
      for (int64_t i = 0; i < N; ++i) c[i] = (t[i] - t[i + 1]) - d;
      const int64_t bottom = working_blocks(wk, c, N, bid, off);
      // free blocks (holding neither end point), numbered in order
      int64_t nb = 0;
      for (int64_t j = 0; j < n1; ++j) {
        const int64_t a = static_cast<int64_t>(bid[j]);
        const bool fixed = (j == 0) || (j == N) || (a == 0) || (a == bottom);
        if (fixed) {
          blk[j] = -1.0;
          continue;
        }
        if (a == j) ++nb;
        blk[j] = static_cast<double>(nb - 1);
      }
      // reduced system: R_ab = sum of Hp over points of blocks a and b; rhs_a = -sum over a of (g + Hp off)
      for (int64_t k = 0; k < nb * nb; ++k) R[k] = 0.0;
      for (int64_t k = 0; k < nb; ++k) rb[k] = 0.0;
      for (int64_t i = 1; i < N; ++i) {
        double vi = g[i];
        for (int64_t j = 1; j < N; ++j) vi += Hp[(i - 1) * n + (j - 1)] * off[j];
        const int64_t a = static_cast<int64_t>(blk[i]);
        if (a < 0) continue;
        rb[a] -= vi;
        for (int64_t j = 1; j < N; ++j) {
          const int64_t b = static_cast<int64_t>(blk[j]);
          if (b >= 0) R[a * nb + b] += Hp[(i - 1) * n + (j - 1)];
        }
      }
      if (nb > 0 && !cholesky(R, nb)) {  // cannot happen for a positive-definite Hp; stop where we are
        done = true;
        iters = it + 1;
        continue;
      }
      if (nb > 0) cholesky_solve(R, nb, rb);
      dt[0] = 0.0;
      dt[N] = 0.0;
      for (int64_t j = 1; j < N; ++j) {
        const int64_t a = static_cast<int64_t>(blk[j]);
        dt[j] = off[j] + (a >= 0 ? rb[a] : 0.0);
      }
      for (int64_t i = 1; i < N; ++i) {
        double vi = g[i];
        for (int64_t j = 1; j < N; ++j) vi += Hp[(i - 1) * n + (j - 1)] * dt[j];
        r[i] = vi;
      }
      const BfgsTrial eval{s, P, tlam, td1, td2, tgl, ow};
      const int outcome = active_set_update(bid, g, r, c, dt, N, gmax, P.xtol, eval, t, trial, wk, mu, f);
      if (outcome == STEP_TAKEN) swap_point(lam, tlam, d1, td1, d2, td2, gl, tgl);
      done = record_outcome(outcome, it, iters);
    }
    if (!done) iters = P.maxiter;
  }

  for (int64_t k = 0; k < n1; ++k) lam_out[k] = lambda_of_t(s, t[k]);
  double value = bfgs_objective(P, lam_out, gl, ow);
  bool finite = is_finite(value);
  for (int64_t k = 0; k < n1; ++k) finite = finite && is_finite(t[k]);
  if (!finite) {  // a failed optimisation keeps the start (spec section 5)
    for (int64_t k = 0; k < n1; ++k) {
      t[k] = ts[k];
      lam_out[k] = lambda_of_t(s, t[k]);
    }
    value = bfgs_objective(P, lam_out, gl, ow);
  }
  *objective = value;
  *penalty = P.gamma * spf_sum(t, N, P.d_min);
  return iters;
}

// One candidate of lower_solve for any objective.
HSO_HD int64_t lower_row(const ScheduleMap& s, const LowerParams& P, double rho, double t_eps, double t_max,
                         double* t, double* lam, double* objective, double* penalty, bool* feasible, double* work) {
  if (P.objective == OBJECTIVE_MEP) {
    return lower_row_mep(s, P, rho, t_eps, t_max, t, lam, objective, penalty, feasible, work);
  }
  return lower_row_bfgs(s, P, rho, t_eps, t_max, t, lam, objective, penalty, feasible, work);
}

// A batch of candidates over several lower-level problems (the lower_solve_many contract of
// hso/fast/reference_lower.py): candidate b solves problem prob[b] (prob == nullptr: every candidate solves
// problem 0) with that problem's noise schedule and parameters. t and lam are [B, n1max]; a candidate with fewer
// intervals leaves NaN after its last point.
struct LowerBatch {
  const double* psi;  // [B, 3]
  const int64_t* prob;  // [B] or nullptr
  const ScheduleMap* maps;  // [problems]
  const LowerParams* params;  // [problems]
  int64_t n1max;
  double* t;
  double* lam;
  double* objective;
  double* penalty;
  int64_t* iters;
  bool* feasible;
};

// the most scratch any problem of the batch needs (doubles per candidate)
HSO_HD int64_t lower_batch_work_size(const LowerParams* params, int64_t problems) {
  int64_t most = 0;
  for (int64_t p = 0; p < problems; ++p) {
    const int64_t w = lower_work_size_for(params[p]);
    most = w > most ? w : most;
  }
  return most;
}

// Candidate b of a batch: the entry point of the OpenMP loop and the CUDA kernel.
HSO_HD void lower_batch_row(const LowerBatch& L, int64_t b, double* work) {
  const int64_t p = L.prob ? L.prob[b] : 0;
  const LowerParams& P = L.params[p];
  double* t = L.t + b * L.n1max;
  double* lam = L.lam + b * L.n1max;
  const double* psi = L.psi + 3 * b;
  L.iters[b] = lower_row(L.maps[p], P, psi[0], psi[1], psi[2], t, lam, L.objective + b, L.penalty + b,
                         L.feasible + b, work);
  for (int64_t k = P.n_int + 1; k < L.n1max; ++k) {
    t[k] = NAN;
    lam[k] = NAN;
  }
}

}  // namespace hso
