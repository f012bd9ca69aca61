#include "cuda/objectives.cuh"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "common/dmn_row.h"
#include "common/lower_bfgs.h"
#include "common/mep_row.h"

namespace hso {
namespace {

constexpr int kThreads = 128;

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("hso CUDA: ") + what + ": " + cudaGetErrorString(err));
  }
}

// Frees a device buffer on every exit path, including exceptions thrown by `check`.
template <typename T = double>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t n) {
    if (n) check(cudaMalloc(&ptr, n * sizeof(T)), "cudaMalloc");
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

}  // namespace

// One candidate per thread: each row's tridiagonal outputs are written by a single thread, so neighbouring
// intervals can share an output element without atomics. Rows are N1 apart, so a warp's loads are strided; N is
// small (tens of points) and B large, which keeps the whole batch in L2 for the sizes the optimiser uses.
__global__ void _mep_forward_kernel(const double* __restrict__ lambdas, int64_t B, int64_t N1, int kind, double p,
                                    double* __restrict__ value, double* __restrict__ grad, double* __restrict__ diag,
                                    double* __restrict__ off) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const bool hessian = diag != nullptr && off != nullptr;
  value[b] = mep_row(lambdas + b * N1, N1, kind, p, grad + b * N1, hessian ? diag + b * N1 : nullptr,
                     hessian ? off + b * (N1 - 1) : nullptr);
}

void launch_mep_forward(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value, double* grad,
                        double* diag, double* off, cudaStream_t stream) {
  if (B <= 0) return;
  const int64_t blocks = (B + kThreads - 1) / kThreads;
  _mep_forward_kernel<<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(lambdas, B, N1, kind, p, value,
                                                                                   grad, diag, off);
  check(cudaGetLastError(), "launching _mep_forward_kernel");
}

void mep_forward_cuda_from_host(const double* lambdas, int64_t B, int64_t N1, int kind, double p, double* value,
                                double* grad, double* diag, double* off) {
  if (B <= 0) return;
  const bool hessian = diag != nullptr && off != nullptr;
  const size_t n_lam = static_cast<size_t>(B) * N1;
  const size_t n_off = static_cast<size_t>(B) * (N1 - 1);
  DeviceBuffer<> d_lam(n_lam), d_value(B), d_grad(n_lam), d_diag(hessian ? n_lam : 0), d_off(hessian ? n_off : 0);
  check(cudaMemcpy(d_lam.ptr, lambdas, n_lam * sizeof(double), cudaMemcpyHostToDevice), "copying lambdas");
  launch_mep_forward(d_lam.ptr, B, N1, kind, p, d_value.ptr, d_grad.ptr, d_diag.ptr, d_off.ptr, nullptr);
  // The blocking copies on the legacy default stream also wait for the kernel and surface its execution errors.
  check(cudaMemcpy(value, d_value.ptr, B * sizeof(double), cudaMemcpyDeviceToHost), "copying value");
  check(cudaMemcpy(grad, d_grad.ptr, n_lam * sizeof(double), cudaMemcpyDeviceToHost), "copying grad");
  if (hessian) {
    check(cudaMemcpy(diag, d_diag.ptr, n_lam * sizeof(double), cudaMemcpyDeviceToHost), "copying diag");
    check(cudaMemcpy(off, d_off.ptr, n_off * sizeof(double), cudaMemcpyDeviceToHost), "copying off");
  }
}

// One candidate per thread with a private scratch row in global memory (dmn_row's per-step coefficients), as in
// the lower-level kernel below, which calls the same dmn_row for its DM-NonUniform objective.
__global__ void _dmn_forward_kernel(const double* __restrict__ lambdas, int64_t B, int64_t N1, int kind, double p,
                                    int64_t trunc, double* __restrict__ value, double* __restrict__ grad,
                                    double* __restrict__ work) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  value[b] = dmn_row(lambdas + b * N1, N1, kind, p, trunc, grad + b * N1, work + b * dmn_work_size(N1));
}

void dmn_forward_cuda_from_host(const double* lambdas, int64_t B, int64_t N1, int kind, double p, int64_t trunc,
                                double* value, double* grad) {
  if (B <= 0) return;
  const size_t n_lam = static_cast<size_t>(B) * N1;
  DeviceBuffer<> d_lam(n_lam), d_value(B), d_grad(n_lam);
  DeviceBuffer<> d_work(static_cast<size_t>(B) * static_cast<size_t>(dmn_work_size(N1)));
  check(cudaMemcpy(d_lam.ptr, lambdas, n_lam * sizeof(double), cudaMemcpyHostToDevice), "copying lambdas");
  const int64_t blocks = (B + kThreads - 1) / kThreads;
  _dmn_forward_kernel<<<static_cast<unsigned int>(blocks), kThreads>>>(d_lam.ptr, B, N1, kind, p, trunc,
                                                                        d_value.ptr, d_grad.ptr, d_work.ptr);
  check(cudaGetLastError(), "launching _dmn_forward_kernel");
  check(cudaMemcpy(value, d_value.ptr, B * sizeof(double), cudaMemcpyDeviceToHost), "copying value");
  check(cudaMemcpy(grad, d_grad.ptr, n_lam * sizeof(double), cudaMemcpyDeviceToHost), "copying grad");
}

// One candidate per thread, the whole lower level (start, Newton, penalty) in registers and a private scratch row
// in global memory; candidates differ in iteration count, but a generation's population converges in a similar
// handful of Newton steps, so warps stay mostly converged. Candidates of different problems (lower_solve_many)
// read their problem's schedule and parameters from the device arrays in L.
__global__ void _lower_solve_kernel(LowerBatch L, int64_t B, int64_t work_size, double* __restrict__ work) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= B) return;
  lower_batch_row(L, b, work + b * work_size);
}

void lower_solve_batch_cuda_from_host(const LowerBatch& L, int64_t B, int64_t problems) {
  if (B <= 0) return;
  const size_t nb = static_cast<size_t>(B);
  const size_t n1 = static_cast<size_t>(L.n1max);
  const size_t np = static_cast<size_t>(problems);
  const int64_t work_size = lower_batch_work_size(L.params, problems);
  // the problems' tables, back to back on the device (one copy of a table that several problems share), and the
  // maps pointing into them
  std::vector<ScheduleMap> maps(L.maps, L.maps + np);
  std::vector<size_t> first(np);  // the first problem with the same host table
  size_t table_total = 0;
  for (size_t p = 0; p < np; ++p) {
    first[p] = p;
    if (maps[p].family != FAMILY_VP_TABLE) continue;
    for (size_t q = 0; q < p; ++q) {
      if (maps[q].family == FAMILY_VP_TABLE && maps[q].table == maps[p].table && maps[q].n == maps[p].n) {
        first[p] = q;
        break;
      }
    }
    if (first[p] == p) table_total += maps[p].n;
  }
  DeviceBuffer<> d_psi(3 * nb), d_t(nb * n1), d_lam(nb * n1), d_obj(nb), d_pen(nb), d_table(table_total);
  DeviceBuffer<> d_work(nb * static_cast<size_t>(work_size));
  DeviceBuffer<int64_t> d_iters(nb), d_prob(L.prob ? nb : 0);
  DeviceBuffer<bool> d_feas(nb);
  DeviceBuffer<ScheduleMap> d_maps(np);
  DeviceBuffer<LowerParams> d_params(np);
  size_t at = 0;
  for (size_t p = 0; p < np; ++p) {
    if (maps[p].family != FAMILY_VP_TABLE) continue;
    if (first[p] != p) {  // maps[first[p]] already points to the device copy
      maps[p].table = maps[first[p]].table;
      continue;
    }
    check(cudaMemcpy(d_table.ptr + at, maps[p].table, maps[p].n * sizeof(double), cudaMemcpyHostToDevice),
          "copying a table");
    maps[p].table = d_table.ptr + at;
    at += maps[p].n;
  }
  check(cudaMemcpy(d_maps.ptr, maps.data(), np * sizeof(ScheduleMap), cudaMemcpyHostToDevice), "copying maps");
  check(cudaMemcpy(d_params.ptr, L.params, np * sizeof(LowerParams), cudaMemcpyHostToDevice), "copying params");
  check(cudaMemcpy(d_psi.ptr, L.psi, 3 * nb * sizeof(double), cudaMemcpyHostToDevice), "copying psi");
  if (L.prob) check(cudaMemcpy(d_prob.ptr, L.prob, nb * sizeof(int64_t), cudaMemcpyHostToDevice), "copying rows");
  const LowerBatch dev{d_psi.ptr, L.prob ? d_prob.ptr : nullptr, d_maps.ptr, d_params.ptr, L.n1max, d_t.ptr,
                       d_lam.ptr, d_obj.ptr, d_pen.ptr, d_iters.ptr, d_feas.ptr};
  const int64_t blocks = (B + kThreads - 1) / kThreads;
  _lower_solve_kernel<<<static_cast<unsigned int>(blocks), kThreads>>>(dev, B, work_size, d_work.ptr);
  check(cudaGetLastError(), "launching _lower_solve_kernel");
  check(cudaMemcpy(L.t, d_t.ptr, nb * n1 * sizeof(double), cudaMemcpyDeviceToHost), "copying t");
  check(cudaMemcpy(L.lam, d_lam.ptr, nb * n1 * sizeof(double), cudaMemcpyDeviceToHost), "copying lambdas");
  check(cudaMemcpy(L.objective, d_obj.ptr, nb * sizeof(double), cudaMemcpyDeviceToHost), "copying objective");
  check(cudaMemcpy(L.penalty, d_pen.ptr, nb * sizeof(double), cudaMemcpyDeviceToHost), "copying penalty");
  check(cudaMemcpy(L.iters, d_iters.ptr, nb * sizeof(int64_t), cudaMemcpyDeviceToHost), "copying iters");
  check(cudaMemcpy(L.feasible, d_feas.ptr, nb * sizeof(bool), cudaMemcpyDeviceToHost), "copying feasible");
}

}  // namespace hso

int hso_cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // reset the last-error slot so this failure does not surface in a later, unrelated check
    return 0;
  }
  return n;
}
