// The OpenMP batch loop of the lower_solve kernel contract (hso/fast/reference_lower.py), for MEP and DMN.
#pragma once

#include <cstdint>

#include "common/lower_bfgs.h"

namespace hso {

// psi [B, 3] = (rho, t_eps, T_max); outputs t, lam [B, N+1], objective, penalty [B], iters [B], feasible [B].
void lower_solve_cpu(const double* psi, int64_t B, const ScheduleMap& s, const LowerParams& P, double* t,
                     double* lam, double* objective, double* penalty, int64_t* iters, bool* feasible);

}  // namespace hso
