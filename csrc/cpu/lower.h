// The OpenMP batch loop of the lower_solve kernel contract (hso/fast/reference_lower.py), for MEP and DMN.
#pragma once

#include <cstdint>

#include "common/lower_bfgs.h"

namespace hso {

// Every candidate of the batch (one problem, or several: `LowerBatch`); `problems` entries in L.maps / L.params.
void lower_solve_batch_cpu(const LowerBatch& L, int64_t B, int64_t problems);

}  // namespace hso
