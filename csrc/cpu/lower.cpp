#include "cpu/lower.h"

#include <vector>

namespace hso {

void lower_solve_batch_cpu(const LowerBatch& L, int64_t B, int64_t problems) {
  // One candidate per iteration with a per-thread scratch row; dynamic scheduling because candidates that start
  // infeasible or far from their optimum take more Newton iterations than the rest. A DE generation (~60 MEP
  // candidates, ~0.2 ms) stays on the calling thread: waking a team costs more than that, and on a busy 2-core
  // machine one descheduled worker stalls the whole region. A DM-NonUniform candidate (BFGS on a non-smooth
  // objective, often a hundred iterations) costs about a millisecond, so a handful of them is worth a team.
#if defined(HSO_WITH_OPENMP)
  int64_t heavy = 0;
  for (int64_t b = 0; b < B && heavy < 8; ++b) {
    heavy += L.params[L.prob ? L.prob[b] : 0].objective != OBJECTIVE_MEP ? 1 : 0;
  }
  const bool parallel = B >= 256 || heavy >= 8;
#pragma omp parallel if (parallel)
#endif
  {
    std::vector<double> work(static_cast<size_t>(lower_batch_work_size(L.params, problems)));
#if defined(HSO_WITH_OPENMP)
#pragma omp for schedule(dynamic, 4)
#endif
    for (int64_t b = 0; b < B; ++b) lower_batch_row(L, b, work.data());
  }
}

}  // namespace hso
