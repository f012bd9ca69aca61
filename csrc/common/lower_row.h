// One candidate of the lower_solve kernel contract (hso/fast/reference_lower.py): start schedule, feasible blend,
// primal active-set Newton in t on MEP, then the SPF penalty. Shared by the OpenMP loop and the CUDA kernel.
//
// The reference solves each working-set Newton system as a dense KKT system. Here the same step is computed in
// O(N): the active gap constraints glue consecutive points into blocks that move rigidly (a block holding an end
// point does not move), so the reduced Hessian over the free blocks is tridiagonal and one Thomas solve gives the
// step; the multipliers of the active constraints follow from cumulative sums of the residual g + H dt inside each
// block. The eigenvalue shift that makes H positive definite is the reference's (Sturm bisection for the extreme
// eigenvalues of the tridiagonal H instead of a dense eigensolver).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/mep_row.h"
#include "common/schedule_map.h"

namespace hso {

constexpr int INIT_EDM_RHO = 0;
constexpr int INIT_LOGSNR = 1;
constexpr int INIT_TIME_UNIFORM = 2;
constexpr int INIT_TIME_QUADRATIC = 3;

constexpr int OBJECTIVE_MEP = 0;
constexpr int OBJECTIVE_DMN = 1;

struct LowerParams {
  int64_t n_int;  // N
  double gap;     // hard minimum t-gap d
  double d_min;   // SPF penalty threshold
  double gamma;   // SPF penalty weight
  int kind;       // lambda-space kind of the objective
  double p;       // node-weight exponent
  int init;       // INIT_*
  int64_t maxiter;
  double xtol;
  int objective = OBJECTIVE_MEP;  // OBJECTIVE_*
  int64_t trunc = 0;              // DM-NonUniform truncNum (resolved by the caller)
};

// doubles of scratch one MEP candidate needs
HSO_HD int64_t lower_work_size_mep(int64_t n_int) { return 26 * (n_int + 1) + 8; }

// start schedule t[0..N] of the init family (hso/inits.py)
HSO_HD void init_row(const ScheduleMap& s, const LowerParams& P, double rho, double t_eps, double t_max, double* t) {
  const int64_t N = P.n_int;
  const double step = 1.0 / static_cast<double>(N);
  double lam_hi = 0.0, lam_lo = 0.0;
  if (P.init == INIT_EDM_RHO || P.init == INIT_LOGSNR) {
    lam_hi = lambda_of_t(s, t_max);
    lam_lo = lambda_of_t(s, t_eps);
  }
  for (int64_t k = 0; k <= N; ++k) {
    const double u = (k == N) ? 1.0 : static_cast<double>(k) * step;
    if (P.init == INIT_EDM_RHO) {
      const double la = -lam_hi / rho, lb = -lam_lo / rho;
      const double mx = ::fmax(la, lb);
      const double log_sig = rho * (mx + ::log((1.0 - u) * ::exp(la - mx) + u * ::exp(lb - mx)));
      t[k] = t_of_lambda(s, -log_sig);
    } else if (P.init == INIT_LOGSNR) {
      t[k] = t_of_lambda(s, lam_hi + u * (lam_lo - lam_hi));
    } else if (P.init == INIT_TIME_UNIFORM) {
      t[k] = t_max + u * (t_eps - t_max);
    } else {
      const double a = ::sqrt(t_max), b = ::sqrt(t_eps);
      t[k] = (a + u * (b - a)) * (a + u * (b - a));
    }
  }
  t[0] = t_max;
  t[N] = t_eps;
}

// blend with the uniform schedule until every gap is >= d; returns false (and the uniform schedule) when the end
// points are too close for N gaps of d
HSO_HD bool feasible_start(double* t, int64_t N, double d) {
  const double t0 = t[0], tn = t[N];
  const double u = (t0 - tn) / static_cast<double>(N);
  const bool feasible = u >= d * (1.0 + 1e-12);
  const double dd = d * (1.0 + 1e-9);
  double w = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const double g = t[i] - t[i + 1];
    if (g < dd) w = ::fmax(w, (dd - g) / (u - g));
  }
  w = feasible ? ::fmin(::fmax(w, 0.0), 1.0) : 1.0;
  const double step = 1.0 / static_cast<double>(N);
  for (int64_t k = 1; k < N; ++k) {
    const double uni = static_cast<double>(k) * step * (tn - t0) + t0;
    t[k] = (1.0 - w) * t[k] + w * uni;
  }
  return feasible;
}

// MEP of the schedule t[0..N]; lam and grad are scratch [N+1]
HSO_HD double mep_of_t(const ScheduleMap& s, const LowerParams& P, const double* t, double* lam, double* grad) {
  for (int64_t k = 0; k <= P.n_int; ++k) lam[k] = lambda_of_t(s, t[k]);
  return mep_row(lam, P.n_int + 1, P.kind, P.p, grad, nullptr, nullptr);
}

// number of eigenvalues < x of the symmetric tridiagonal (d[0..n), e[0..n-1)) (Sturm count)
HSO_HD int64_t sturm_count(const double* d, const double* e, int64_t n, double x) {
  int64_t count = 0;
  double q = 1.0;
  for (int64_t i = 0; i < n; ++i) {
    const double e2 = (i > 0) ? e[i - 1] * e[i - 1] : 0.0;
    q = d[i] - x - ((i > 0) ? e2 / q : 0.0);
    if (q == 0.0) q = -1e-300;
    if (q < 0.0) ++count;
  }
  return count;
}

// smallest (which = 0) or largest (which = 1) eigenvalue of the tridiagonal, by bisection to rounding
HSO_HD double extreme_eigenvalue(const double* d, const double* e, int64_t n, int which) {
  double lo = d[0], hi = d[0];
  for (int64_t i = 0; i < n; ++i) {
    const double r = ((i > 0) ? ::fabs(e[i - 1]) : 0.0) + ((i + 1 < n) ? ::fabs(e[i]) : 0.0);
    lo = ::fmin(lo, d[i] - r);
    hi = ::fmax(hi, d[i] + r);
  }
  const int64_t target = (which == 0) ? 1 : n;  // count of eigenvalues < x that brackets the wanted one
  for (int it = 0; it < 200 && hi - lo > 1e-15 * ::fmax(::fabs(lo), ::fabs(hi)); ++it) {
    const double mid = 0.5 * (lo + hi);
    if (sturm_count(d, e, n, mid) >= target) hi = mid; else lo = mid;
  }
  return 0.5 * (lo + hi);
}

// Active-set bookkeeping shared by the lower levels. The active gap constraints glue consecutive points into
// blocks: bid[j] = first point of j's block (as double); off[j] = the move of point j that keeps its block's active
// constraints satisfied (dt_{j+1} = dt_j + c_j inside a block; a block holding point 0 starts at 0, the block
// holding N ends at 0). Returns the first point of the block holding N.
HSO_HD int64_t working_blocks(const double* wk, const double* c, int64_t N, double* bid, double* off) {
  const int64_t n1 = N + 1;
  for (int64_t j = 0; j < n1; ++j) bid[j] = (j > 0 && wk[j - 1] > 0.5) ? bid[j - 1] : static_cast<double>(j);
  const int64_t bottom = static_cast<int64_t>(bid[N]);
  for (int64_t j = 0; j < n1; ++j) {
    off[j] = (static_cast<int64_t>(bid[j]) == j) ? 0.0 : off[j - 1] + c[j - 1];
  }
  if (bottom > 0) {  // the block holding N: shift so that dt_N = 0
    const double sh = off[N];
    for (int64_t j = bottom; j < n1; ++j) off[j] -= sh;
  }
  return bottom;
}

// multipliers mu[0..N) of the active constraints from the residual r = g + H dt (interior points), block by block
HSO_HD void block_multipliers(const double* bid, const double* r, int64_t N, double* mu) {
  const int64_t n1 = N + 1;
  for (int64_t i = 0; i < N; ++i) mu[i] = 0.0;
  for (int64_t j = 0; j < n1;) {  // walk the blocks
    const int64_t a = j;
    int64_t e = a;
    while (e + 1 < n1 && static_cast<int64_t>(bid[e + 1]) == a) ++e;
    if (a == 0) {
      double m = 0.0;  // constraint e is inactive: mu_e = 0, then mu_{j-1} = mu_j - r_j upwards
      for (int64_t q = e; q >= 1; --q) {
        m -= r[q];
        mu[q - 1] = m;
      }
    } else {
      double m = 0.0;  // constraint a-1 is inactive: mu_j = mu_{j-1} + r_j downwards
      for (int64_t q = a; q < e; ++q) {
        m += r[q];
        mu[q] = m;
      }
    }
    j = e + 1;
  }
}

// the active constraint with the most negative multiplier (-1 when none is active); its multiplier in mu_min
HSO_HD int64_t most_negative_multiplier(const double* wk, const double* mu, int64_t N, double& mu_min) {
  int64_t worst = -1;
  mu_min = INFINITY;
  for (int64_t i = 0; i < N; ++i) {
    if (wk[i] > 0.5 && mu[i] < mu_min) {
      mu_min = mu[i];
      worst = i;
    }
  }
  return worst;
}

// ratio test over the inactive constraints: the largest step along dt that keeps them satisfied, and which blocks
HSO_HD double ratio_test(const double* wk, const double* c, const double* dt, int64_t N, int64_t& block) {
  double alpha_max = INFINITY;
  block = -1;
  for (int64_t i = 0; i < N; ++i) {
    if (wk[i] > 0.5) continue;
    const double dc = dt[i] - dt[i + 1];
    if (dc < 0.0) {
      const double ratio = ::fmax(c[i], 0.0) / -dc;
      if (ratio < alpha_max) {
        alpha_max = ratio;
        block = i;
      }
    }
  }
  return alpha_max;
}

// Armijo backtracking along dt over alpha, alpha / 2, ... (24 tries), as the reference: the first step that lowers
// f by 1e-4 alpha dec, or, in the Newton region (dec below f's rounding), does not raise f beyond rounding.
// eval(trial) returns the objective at the trial point and fills the caller's trial buffers. Returns whether a step
// was accepted; alpha and ft then hold it.
template <class Eval>
HSO_HD bool armijo_backtrack(const double* t, const double* dt, int64_t n1, double f, double dec, double& alpha,
                             double& ft, double* trial, const Eval& eval) {
  const bool newton_region = dec <= 1e-10 * (1.0 + ::fabs(f));
  for (int ls = 0; ls < 24; ++ls) {
    for (int64_t k = 0; k < n1; ++k) trial[k] = t[k] + alpha * dt[k];
    const double v = eval(trial);
    const bool ok = is_finite(v) &&
                    ((v <= f - 1e-4 * alpha * dec) || (newton_region && v <= f + 4e-16 * (1.0 + ::fabs(f))));
    if (ok) {
      ft = v;
      return true;
    }
    alpha *= 0.5;
  }
  return false;
}

// MEP at a trial schedule, with the derivatives and Hessian the next Newton step needs (into the trial buffers)
struct MepTrial {
  const ScheduleMap& s;
  const LowerParams& P;
  double *lam, *d1, *d2, *gl, *hd, *ho;
  HSO_HD double operator()(const double* t) const {
    const int64_t n1 = P.n_int + 1;
    for (int64_t k = 0; k < n1; ++k) lambda_derivs(s, t[k], lam[k], d1[k], d2[k]);
    return mep_row(lam, n1, P.kind, P.p, gl, hd, ho);
  }
};

// outcomes of one active-set iteration
constexpr int STEP_TAKEN = 0;          // a step was accepted; the trial buffers hold the new point
constexpr int STEP_RELEASED = 1;       // the step was negligible and a constraint left the working set
constexpr int STEP_DONE = 2;           // the step was negligible and every multiplier is >= 0: converged
constexpr int STEP_NONE_RELEASED = 3;  // no acceptable step (solved to rounding); a constraint left the working set
constexpr int STEP_NONE_DONE = 4;      // no acceptable step and nothing to release: converged

// The rest of an iteration once the step dt and the residual r = g + H dt are known (shared by both lower levels):
// the step's size and predicted decrease -g.dt; multipliers; at a negligible step release the most negative one or
// stop; otherwise the ratio test, Armijo backtracking (eval as in `armijo_backtrack`), and the blocking constraint
// joins the working set when the full ratio-test step was taken. Updates t, f, wk and mu in place.
template <class Eval>
HSO_HD int active_set_update(const double* bid, const double* g, const double* r, const double* c, const double* dt,
                             int64_t N, double gmax, double xtol, const Eval& eval, double* t, double* trial,
                             double* wk, double* mu, double& f) {
  double smax = 0.0, dec = 0.0;
  for (int64_t j = 1; j < N; ++j) {
    smax = ::fmax(smax, ::fabs(dt[j]));
    dec -= g[j] * dt[j];
  }
  block_multipliers(bid, r, N, mu);
  const double mu_tol = 1e-10 * (1.0 + gmax);
  double mu_min;
  const int64_t worst = most_negative_multiplier(wk, mu, N, mu_min);
  const bool release = worst >= 0 && mu_min < -mu_tol;
  if (smax <= xtol) {
    if (release) wk[worst] = 0.0;
    return release ? STEP_RELEASED : STEP_DONE;
  }
  int64_t block;
  const double alpha_max = ratio_test(wk, c, dt, N, block);
  double alpha = ::fmin(1.0, alpha_max);
  double ft = f;
  if (armijo_backtrack(t, dt, N + 1, f, dec, alpha, ft, trial, eval)) {
    if (alpha == alpha_max && is_finite(alpha_max) && block >= 0) wk[block] = 1.0;
    for (int64_t k = 0; k <= N; ++k) t[k] = trial[k];
    f = ft;
    return STEP_TAKEN;
  }
  if (release) wk[worst] = 0.0;
  return release ? STEP_NONE_RELEASED : STEP_NONE_DONE;
}

HSO_HD void swap_rows(double*& a, double*& b) {
  double* tmp = a;
  a = b;
  b = tmp;
}

// after a step is taken the trial buffers hold the new point: they become the current ones (lambda, the two
// derivatives of lambda(t) and the gradient; each lower level swaps its own Hessian buffers besides)
HSO_HD void swap_point(double*& lam, double*& tlam, double*& d1, double*& td1, double*& d2, double*& td2,
                       double*& gl, double*& tgl) {
  swap_rows(lam, tlam);
  swap_rows(d1, td1);
  swap_rows(d2, td2);
  swap_rows(gl, tgl);
}

// the iteration count and convergence after an `active_set_update` outcome: true when the row has converged
HSO_HD bool record_outcome(int outcome, int64_t it, int64_t& iters) {
  if (outcome == STEP_TAKEN || outcome == STEP_NONE_RELEASED) return false;
  iters = it + 1;
  return outcome != STEP_RELEASED;
}

// the SPF penalty's sum of squared shortfalls below d_min (spec section 6), before the weight gamma
HSO_HD double spf_sum(const double* t, int64_t N, double d_min) {
  double pen = 0.0;
  for (int64_t i = 0; i < N; ++i) {
    const double sh = ::fmax(0.0, d_min - ::fabs(t[i] - t[i + 1]));
    pen += sh * sh;
  }
  return pen;
}

// The MEP lower level for one candidate (exact tridiagonal Hessian, O(N) per Newton step). Writes t[0..N], lam[0..N]; returns the number of iterations.
HSO_HD int64_t lower_row_mep(const ScheduleMap& s, const LowerParams& P, double rho, double t_eps, double t_max,
                         double* t, double* lam_out, double* objective, double* penalty, bool* feasible_out,
                         double* work) {
  const int64_t N = P.n_int, n1 = N + 1;
  double* lam = lam_out;           // lambda at the current point; swapped with the trial rows during the search
  double* ts = work;               // start [n1]
  double* d1 = ts + n1;            // lambda'(t)
  double* d2 = d1 + n1;            // lambda''(t)
  double* gl = d2 + n1;            // dJ/dlambda
  double* hd = gl + n1;            // d2J/dlambda2 diag
  double* ho = hd + n1;            // d2J/dlambda2 off
  double* g = ho + n1;             // dJ/dt (interior used)
  double* Hd = g + n1;             // t-Hessian diag, shifted (interior)
  double* Ho = Hd + n1;            // t-Hessian off (j, j+1)
  double* dt = Ho + n1;            // Newton step, dt[0] = dt[N] = 0
  double* off = dt + n1;           // block offsets
  double* c = off + n1;            // constraint slacks [N]
  double* mu = c + n1;             // multipliers [N]
  double* wk = mu + n1;            // working set as 0/1 [N]
  double* trial = wk + n1;         // trial schedule
  double* r = trial + n1;          // residual g + H dt
  double* rd = r + n1;             // reduced system diag / Thomas scratch
  double* ro = rd + n1;            // reduced system off
  double* rb = ro + n1;            // reduced system rhs / solution
  double* bid = rb + n1;           // block start point of each point (as double)
  // the line search's trial point is evaluated with derivatives and Hessian, so an accepted step needs no second
  // evaluation at the top of the next iteration: the trial rows simply become the current ones (pointer swap)
  double* tlam = bid + n1;
  double* td1 = tlam + n1;
  double* td2 = td1 + n1;
  double* tgl = td2 + n1;
  double* thd = tgl + n1;
  double* tho = thd + n1;
  const double d = P.gap;

  init_row(s, P, rho, t_eps, t_max, t);
  const bool feasible = feasible_start(t, N, d);
  for (int64_t k = 0; k < n1; ++k) ts[k] = t[k];
  *feasible_out = feasible;
  int64_t iters = 0;
  const int64_t n = N - 1;  // interior points 1..N-1

  if (feasible && n > 0) {
    for (int64_t i = 0; i < N; ++i) wk[i] = 0.0;
    bool done = false;
    // current point: lambda, its t-derivatives, and MEP with gradient and Hessian in lambda
    for (int64_t k = 0; k < n1; ++k) lambda_derivs(s, t[k], lam[k], d1[k], d2[k]);
    double f = mep_row(lam, n1, P.kind, P.p, gl, hd, ho);
    for (int64_t it = 0; it < P.maxiter && !done; ++it) {
      double gmax = 0.0;
      for (int64_t j = 1; j < N; ++j) {
        g[j] = gl[j] * d1[j];
        Hd[j] = hd[j] * d1[j] * d1[j] + gl[j] * d2[j];
        gmax = ::fmax(gmax, ::fabs(g[j]));
      }
      for (int64_t j = 1; j + 1 < N; ++j) Ho[j] = ho[j] * d1[j] * d1[j + 1];
      // positive-definite shift: max(0, 1e-8 * max|eig| - min eig). Usually H is comfortably positive definite:
      // one Sturm count at 1e-8 times a Gershgorin bound of max|eig| proves tau = 0 without any bisection.
      double gersh = 0.0;
      for (int64_t j = 1; j < N; ++j) {
        const double rad = ((j > 1) ? ::fabs(Ho[j - 1]) : 0.0) + ((j + 1 < N) ? ::fabs(Ho[j]) : 0.0);
        gersh = ::fmax(gersh, ::fabs(Hd[j]) + rad);
      }
      double tau = 0.0;
      if (sturm_count(Hd + 1, Ho + 1, n, 1e-8 * gersh) > 0) {
        const double ev_min = extreme_eigenvalue(Hd + 1, Ho + 1, n, 0);
        const double ev_max = extreme_eigenvalue(Hd + 1, Ho + 1, n, 1);
        const double scale = ::fmax(::fmax(::fabs(ev_min), ::fabs(ev_max)), 1e-300);
        tau = ::fmax(0.0, 1e-8 * scale - ev_min);
      }
      for (int64_t j = 1; j < N; ++j) Hd[j] += tau;
      for (int64_t i = 0; i < N; ++i) c[i] = (t[i] - t[i + 1]) - d;

      const int64_t bottom = working_blocks(wk, c, N, bid, off);
      // free blocks are those holding neither end point; number them in order
      // reduced system R u = -Z^T (g + H off), tridiagonal over free blocks
      int64_t nb = 0;
      for (int64_t j = 1; j < N; ++j) {
        const int64_t a = static_cast<int64_t>(bid[j]);
        const bool fixed = (a == 0) || (a == bottom);
        if (fixed) continue;
        if (a == j) {  // a new free block
          rd[nb] = 0.0;
          ro[nb] = 0.0;
          rb[nb] = 0.0;
          ++nb;
        }
      }
      // v = g + H off over interior points, accumulated into the blocks
      {
        int64_t b = -1;
        for (int64_t j = 1; j < N; ++j) {
          const int64_t a = static_cast<int64_t>(bid[j]);
          const bool fixed = (a == 0) || (a == bottom);
          double v = g[j] + Hd[j] * off[j];
          if (j > 1) v += Ho[j - 1] * off[j - 1];
          if (j + 1 < N) v += Ho[j] * off[j + 1];
          r[j] = v;
          if (fixed) continue;
          if (a == j) ++b;
          rb[b] -= v;
          rd[b] += Hd[j];
          if (j + 1 < N && static_cast<int64_t>(bid[j + 1]) == a) rd[b] += 2.0 * Ho[j];
          else if (j + 1 < N) {
            const int64_t a2 = static_cast<int64_t>(bid[j + 1]);
            if (a2 != 0 && a2 != bottom) ro[b] = Ho[j];  // coupling to the next free block
          }
        }
      }
      // Thomas solve (R is positive definite: a compression of the shifted H)
      for (int64_t b = 1; b < nb; ++b) {
        const double m = ro[b - 1] / rd[b - 1];
        rd[b] -= m * ro[b - 1];
        rb[b] -= m * rb[b - 1];
      }
      for (int64_t b = nb - 1; b >= 0; --b) {
        rb[b] = (rb[b] - ((b + 1 < nb) ? ro[b] * rb[b + 1] : 0.0)) / rd[b];
      }
      // step
      dt[0] = 0.0;
      dt[N] = 0.0;
      {
        int64_t b = -1;
        for (int64_t j = 1; j < N; ++j) {
          const int64_t a = static_cast<int64_t>(bid[j]);
          const bool fixed = (a == 0) || (a == bottom);
          if (!fixed && a == j) ++b;
          dt[j] = off[j] + (fixed ? 0.0 : rb[b]);
        }
      }
      // multipliers of the active constraints from r = g + H dt
      for (int64_t j = 1; j < N; ++j) {
        double v = g[j] + Hd[j] * dt[j];
        if (j > 1) v += Ho[j - 1] * dt[j - 1];
        if (j + 1 < N) v += Ho[j] * dt[j + 1];
        r[j] = v;
      }
      const MepTrial eval{s, P, tlam, td1, td2, tgl, thd, tho};
      const int outcome = active_set_update(bid, g, r, c, dt, N, gmax, P.xtol, eval, t, trial, wk, mu, f);
      if (outcome == STEP_TAKEN) {
        swap_point(lam, tlam, d1, td1, d2, td2, gl, tgl);
        swap_rows(hd, thd);
        swap_rows(ho, tho);
      }
      done = record_outcome(outcome, it, iters);
    }
    if (!done) iters = P.maxiter;
  }

  double value = mep_of_t(s, P, t, lam_out, gl);
  bool finite = is_finite(value);
  for (int64_t k = 0; k < n1; ++k) finite = finite && is_finite(t[k]);
  if (!finite) {  // a failed optimisation keeps the start (spec section 5)
    for (int64_t k = 0; k < n1; ++k) t[k] = ts[k];
    value = mep_of_t(s, P, t, lam_out, gl);
  }
  *objective = value;
  *penalty = P.gamma * spf_sum(t, N, P.d_min);
  return iters;
}

}  // namespace hso
