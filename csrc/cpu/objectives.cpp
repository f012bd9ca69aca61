#include "cpu/objectives.h"

#include <vector>

#include "common/dmn_row.h"
#include "common/mep_row.h"

namespace hso {

void mep_forward_cpu(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value, double* grad,
                     double* diag, double* off) {
  const bool hessian = diag != nullptr && off != nullptr;
  // One candidate per iteration: rows are independent and each writes only its own outputs, so no reductions or
  // atomics. Small batches stay on the calling thread, where starting a team would cost more than the work.
#if defined(HSO_WITH_OPENMP)
#pragma omp parallel for schedule(static) if (B * N1 >= 4096)
#endif
  for (int64_t b = 0; b < B; ++b) {
    value[b] = mep_row(lambdas + b * N1, N1, kind, p, grad + b * N1, hessian ? diag + b * N1 : nullptr,
                       hessian ? off + b * (N1 - 1) : nullptr);
  }
}

void dmn_forward_cpu(const double* lambdas, int64_t B, int64_t N1, int kind, double p, int64_t trunc, double* value,
                     double* grad) {
#if defined(HSO_WITH_OPENMP)
#pragma omp parallel if (B * N1 >= 4096)
#endif
  {
    std::vector<double> work(static_cast<size_t>(dmn_work_size(N1)));
#if defined(HSO_WITH_OPENMP)
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < B; ++b) {
      value[b] = dmn_row(lambdas + b * N1, N1, kind, p, trunc, grad + b * N1, work.data());
    }
  }
}

}  // namespace hso
