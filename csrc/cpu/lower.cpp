#include "cpu/lower.h"

#include <vector>

namespace hso {

void lower_solve_cpu(const double* psi, int64_t B, const ScheduleMap& s, const LowerParams& P, double* t,
                     double* lam, double* objective, double* penalty, int64_t* iters, bool* feasible) {
  const int64_t n1 = P.n_int + 1;
  // One candidate per iteration with a per-thread scratch row; dynamic scheduling because candidates that start
  // infeasible or far from their optimum take more Newton iterations than the rest. A DE generation (~60
  // candidates, ~0.2 ms) stays on the calling thread: waking a team costs more than that, and on a busy 2-core
  // machine one descheduled worker stalls the whole region. A DM-NonUniform candidate (BFGS on a non-smooth
  // objective, often a hundred iterations) costs about a millisecond, so there a generation is worth a team.
#if defined(HSO_WITH_OPENMP)
  const bool parallel = B >= 256 || (P.objective != OBJECTIVE_MEP && B >= 8);
#pragma omp parallel if (parallel)
#endif
  {
    std::vector<double> work(static_cast<size_t>(lower_work_size_for(P)));
#if defined(HSO_WITH_OPENMP)
#pragma omp for schedule(dynamic, 4)
#endif
    for (int64_t b = 0; b < B; ++b) {
      iters[b] = lower_row(s, P, psi[3 * b], psi[3 * b + 1], psi[3 * b + 2], t + b * n1, lam + b * n1,
                           objective + b, penalty + b, feasible + b, work.data());
    }
  }
}

}  // namespace hso
