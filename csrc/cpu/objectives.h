// CPU (OpenMP) implementation of the kernel contract in hso/fast/reference.py.
#pragma once

#include <cstdint>

namespace hso {

// MEP value, gradient and (when diag and off are non-null) tridiagonal Hessian for a batch of schedules; see
// `mep_and_grad` in hso/fast/reference.py for the formulas. Buffers are row-major float64:
//   lambdas [B, N1] (increasing along a row, N1 = N + 1 >= 2), value [B], grad [B, N1], diag [B, N1], off [B, N1-1].
// kind is KIND_VP / KIND_VE / KIND_FLOW (0 / 1 / 2); the caller validates shapes and kind.
void mep_forward_cpu(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value, double* grad,
                     double* diag /*nullable*/, double* off /*nullable*/);

// DM-NonUniform value and gradient for a batch of schedules; see `dmn_and_grad` in hso/fast/reference_dmn.py.
// trunc is the truncNum, already resolved by the caller (>= 0).
void dmn_forward_cpu(const double* lambdas, int64_t B, int64_t N1, int kind, double p, int64_t trunc, double* value,
                     double* grad);

}  // namespace hso
