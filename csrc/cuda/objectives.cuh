// CUDA implementation of the kernel contract in hso/fast/reference.py.
// Declarations only: this header is included by bindings.cpp, which the host C++ compiler builds without the CUDA
// include path, so it must not pull in cuda_runtime.h.
#pragma once

#include <cstdint>

#include "common/lower_bfgs.h"

typedef struct CUstream_st* cudaStream_t;  // the CUDA runtime's own declaration, repeated verbatim

namespace hso {

// Launches `_mep_forward_kernel` on `stream`: the same buffers and meaning as `mep_forward_cpu`, but every pointer is
// a device pointer. Asynchronous; throws std::runtime_error if the launch is rejected.
void launch_mep_forward(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value, double* grad,
                        double* diag /*nullable*/, double* off /*nullable*/, cudaStream_t stream = nullptr);

// Host-buffer convenience for the binding: copies lambdas to the current device, launches, copies the outputs back
// and frees everything. Throws std::runtime_error with the CUDA error string on failure.
void mep_forward_cuda_from_host(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value,
                                double* grad, double* diag /*nullable*/, double* off /*nullable*/);

// Host-buffer DM-NonUniform value and gradient (the contract of dmn_forward_cpu; trunc resolved by the caller):
// one candidate per thread of `_dmn_forward_kernel`. Throws std::runtime_error with the CUDA error string on failure.
void dmn_forward_cuda_from_host(const double* lambdas, int64_t B, int64_t N1, int kind, double p, int64_t trunc,
                                double* value, double* grad);

// Host-buffer batch over several problems (the contract of lower_solve_batch_cpu): copies psi, the rows' problem
// indices, the problems' schedules (tables back to back) and parameters to the device, runs `_lower_solve_kernel`
// and copies the results back.
void lower_solve_batch_cuda_from_host(const LowerBatch& L, int64_t B, int64_t problems);

}  // namespace hso

// Number of visible CUDA devices; 0 when there is no driver, no device or any other runtime error.
int hso_cuda_device_count();
