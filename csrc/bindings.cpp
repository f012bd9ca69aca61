// The private extension module hso._C: numpy buffers in, new numpy arrays out, for the kernel contract written in
// hso/fast/reference.py. Shape and kind checks live here because the kernels trust their buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/lower.h"
#include "cpu/objectives.h"

#if defined(HSO_WITH_OPENMP)
#include <omp.h>
#endif
#if defined(HSO_WITH_CUDA)
#include "cuda/objectives.cuh"
#endif

namespace py = pybind11;

namespace {

// forcecast + c_style: any array-like input becomes a C-contiguous float64 array (copied only when it is not one).
using InArray = py::array_t<double, py::array::c_style | py::array::forcecast>;
using OutArray = py::array_t<double>;
using RowsArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

using Kernel = void (*)(const double*, int64_t, int64_t, int, double, double*, double*, double*, double*);

void check_mep_args(const InArray& lambdas, int kind) {
  if (lambdas.ndim() != 2) {
    throw std::invalid_argument("lambdas must be 2-D [B, N+1], got " + std::to_string(lambdas.ndim()) + "-D");
  }
  if (lambdas.shape(1) < 2) {
    throw std::invalid_argument("lambdas needs at least 2 points per row (N >= 1), got " +
                                std::to_string(lambdas.shape(1)));
  }
  if (kind != hso::KIND_VP && kind != hso::KIND_VE && kind != hso::KIND_FLOW) {
    throw std::invalid_argument("unknown lambda-space kind " + std::to_string(kind) +
                                "; known: 0 (VP), 1 (VE), 2 (flow)");
  }
}

py::tuple mep_and_grad_with(Kernel kernel, const InArray& lambdas, int kind, double p, bool hessian) {
  check_mep_args(lambdas, kind);
  const py::ssize_t B = lambdas.shape(0);
  const py::ssize_t N1 = lambdas.shape(1);
  OutArray value(B);
  OutArray grad({B, N1});
  OutArray diag = hessian ? OutArray({B, N1}) : OutArray();
  OutArray off = hessian ? OutArray({B, N1 - 1}) : OutArray();
  const double* lam = lambdas.data();
  double* v = value.mutable_data();
  double* g = grad.mutable_data();
  double* d = hessian ? diag.mutable_data() : nullptr;
  double* o = hessian ? off.mutable_data() : nullptr;
  {
    py::gil_scoped_release release;
    kernel(lam, B, N1, kind, p, v, g, d, o);
  }
  if (hessian) return py::make_tuple(value, grad, diag, off);
  return py::make_tuple(value, grad);
}

std::string compiler_name() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("GCC ") + __VERSION__;
#elif defined(_MSC_VER)
  return "MSVC " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

constexpr const char* kMepDoc = R"doc(MEP value, gradient (and tridiagonal Hessian) for a batch of schedules.

The contract of hso.fast.reference.mep_and_grad: lambdas [B, N+1] float64 (increasing along a row), kind 0/1/2
(VP/VE/flow), exponent p. Returns (value [B], grad [B, N+1]) or, with hessian=True,
(value, grad, diag [B, N+1], off [B, N]).

Raises:
    ValueError: lambdas is not 2-D, has fewer than 2 points per row, or kind is unknown.
)doc";

constexpr const char* kLowerDoc = R"doc(The HSO lower level for a batch of candidates (MEP or DM-NonUniform).

The contract of hso.fast.reference_lower.lower_solve: psi [B, 3] = (rho, t_eps, T_max); the noise schedule as
family (0 vp table, 1 vp linear, 2 vp cosine, 3 edm, 4 flow), two parameters a, b and the log-alpha table (vp table
only); N, the hard gap d, d_min, gamma, the lambda-space kind, p, the init family (0 edm_rho, 1 logSNR,
2 time_uniform, 3 time_quadratic), maxiter and xtol; the objective (0 MEP with its exact Hessian, 1 DM-NonUniform
with BFGS) and, for DM-NonUniform, truncNum.
Returns (t [B, N+1], lambdas [B, N+1], objective [B], penalty [B], iters [B] int64, feasible [B] bool).

Raises:
    ValueError: psi is not [B, 3], N < 1, unknown family / kind / init / objective, negative truncNum, or a missing
        table.
)doc";

constexpr const char* kDmnDoc = R"doc(DM-NonUniform value and gradient for a batch of schedules.

The contract of hso.fast.reference_dmn.dmn_and_grad: lambdas [B, N+1] float64 (increasing along a row), kind 0/1/2,
exponent p and truncNum (resolved: >= 0). Returns (value [B], grad [B, N+1]).

Raises:
    ValueError: lambdas is not 2-D, has fewer than 2 points per row, kind is unknown or truncNum is negative.
)doc";

using DmnKernel = void (*)(const double*, int64_t, int64_t, int, double, int64_t, double*, double*);

py::tuple dmn_and_grad_with(DmnKernel kernel, const InArray& lambdas, int kind, double p, int64_t trunc) {
  check_mep_args(lambdas, kind);
  if (trunc < 0) throw std::invalid_argument("trunc must be >= 0");
  const py::ssize_t B = lambdas.shape(0);
  const py::ssize_t N1 = lambdas.shape(1);
  OutArray value(B);
  OutArray grad({B, N1});
  const double* lam = lambdas.data();
  double* v = value.mutable_data();
  double* g = grad.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(lam, B, N1, kind, p, trunc, v, g);
  }
  return py::make_tuple(value, grad);
}

using BatchKernel = void (*)(const hso::LowerBatch&, int64_t, int64_t);

// the checks every lower-level problem passes before a kernel trusts it
void check_problem(int family, int64_t table_len, int64_t n_int, int kind, int init, int objective, int64_t trunc) {
  if (n_int < 1) throw std::invalid_argument("N must be >= 1");
  if (family < hso::FAMILY_VP_TABLE || family > hso::FAMILY_FLOW) {
    throw std::invalid_argument("unknown schedule family " + std::to_string(family));
  }
  if (kind < hso::KIND_VP || kind > hso::KIND_FLOW) {
    throw std::invalid_argument("unknown lambda-space kind " + std::to_string(kind));
  }
  if (init < hso::INIT_EDM_RHO || init > hso::INIT_TIME_QUADRATIC) {
    throw std::invalid_argument("unknown init family " + std::to_string(init));
  }
  if (objective != hso::OBJECTIVE_MEP && objective != hso::OBJECTIVE_DMN) {
    throw std::invalid_argument("unknown objective " + std::to_string(objective) + "; known: 0 (mep), 1 (dmn)");
  }
  if (trunc < 0) throw std::invalid_argument("trunc must be >= 0");
  if (family == hso::FAMILY_VP_TABLE && table_len < 2) {
    throw std::invalid_argument("the vp table family needs a 1-D log-alpha table with >= 2 entries");
  }
}

void check_psi(const InArray& psi) {
  if (psi.ndim() != 2 || psi.shape(1) != 3) throw std::invalid_argument("psi must be [B, 3]");
}

// run a batch and return (t, lambdas, objective, penalty, iters, feasible), t and lambdas [B, n1max]
py::tuple run_batch(BatchKernel kernel, const InArray& psi, const int64_t* prob, const hso::ScheduleMap* maps,
                    const hso::LowerParams* params, int64_t problems, int64_t n1max) {
  const py::ssize_t B = psi.shape(0);
  OutArray t({B, static_cast<py::ssize_t>(n1max)});
  OutArray lam({B, static_cast<py::ssize_t>(n1max)});
  OutArray objective_out(B);
  OutArray penalty(B);
  py::array_t<int64_t> iters(B);
  py::array_t<bool> feasible(B);
  const hso::LowerBatch L{psi.data(), prob, maps, params, n1max, t.mutable_data(), lam.mutable_data(),
                          objective_out.mutable_data(), penalty.mutable_data(), iters.mutable_data(),
                          feasible.mutable_data()};
  {
    py::gil_scoped_release release;
    kernel(L, B, problems);
  }
  return py::make_tuple(t, lam, objective_out, penalty, iters, feasible);
}

py::tuple lower_solve_with(BatchKernel kernel, const InArray& psi, int family, double a, double b,
                           const InArray& table, int64_t n_int, double gap, double d_min, double gamma, int kind,
                           double p, int init, int64_t maxiter, double xtol, int objective, int64_t trunc) {
  check_psi(psi);
  const int64_t table_len = (table.ndim() == 1) ? table.shape(0) : 0;
  check_problem(family, table_len, n_int, kind, init, objective, trunc);
  const hso::ScheduleMap s{family, a, b, family == 0 ? table.data() : nullptr, family == 0 ? table_len : 0};
  const hso::LowerParams P{n_int, gap, d_min, gamma, kind, p, init, maxiter, xtol, objective, trunc};
  return run_batch(kernel, psi, nullptr, &s, &P, 1, n_int + 1);
}

// columns of lower_solve_many's problem table
constexpr int kProblemColumns = 16;

py::tuple lower_solve_many_with(BatchKernel kernel, const InArray& psi, const RowsArray& rows,
                                const InArray& problems, const InArray& tables) {
  check_psi(psi);
  if (problems.ndim() != 2 || problems.shape(1) != kProblemColumns || problems.shape(0) < 1) {
    throw std::invalid_argument("problems must be [P, 16] with P >= 1");
  }
  if (rows.ndim() != 1 || rows.shape(0) != psi.shape(0)) throw std::invalid_argument("rows must be [B], as psi");
  if (tables.ndim() != 1) throw std::invalid_argument("tables must be 1-D");
  const int64_t np = problems.shape(0);
  const int64_t* rp = rows.data();
  for (py::ssize_t i = 0; i < rows.shape(0); ++i) {
    if (rp[i] < 0 || rp[i] >= np) {
      throw std::invalid_argument("rows[" + std::to_string(i) + "] = " + std::to_string(rp[i]) +
                                  " is not a problem index (0.." + std::to_string(np - 1) + ")");
    }
  }
  std::vector<hso::ScheduleMap> maps(static_cast<size_t>(np));
  std::vector<hso::LowerParams> params(static_cast<size_t>(np));
  int64_t n1max = 2;
  const double* q = problems.data();
  for (int64_t i = 0; i < np; ++i, q += kProblemColumns) {
    for (int c : {0, 3, 4, 5, 9, 11, 12, 14, 15}) {  // the integer columns: codes, table place, N, maxiter, trunc
      if (!(std::isfinite(q[c]) && q[c] == std::floor(q[c]) && std::fabs(q[c]) < 9.0e15)) {
        throw std::invalid_argument("problem " + std::to_string(i) + ": column " + std::to_string(c) +
                                    " must hold an integer");
      }
    }
    const int family = static_cast<int>(q[0]);
    const int64_t offset = static_cast<int64_t>(q[3]), len = static_cast<int64_t>(q[4]);
    const int64_t n_int = static_cast<int64_t>(q[5]);
    const int kind = static_cast<int>(q[9]), init = static_cast<int>(q[11]), objective = static_cast<int>(q[14]);
    const int64_t trunc = static_cast<int64_t>(q[15]);
    const bool table = family == hso::FAMILY_VP_TABLE;
    if (table && (offset < 0 || len < 0 || offset + len > tables.shape(0))) {
      throw std::invalid_argument("problem " + std::to_string(i) + ": its table lies outside tables");
    }
    check_problem(family, table ? len : 0, n_int, kind, init, objective, trunc);
    maps[i] = hso::ScheduleMap{family, q[1], q[2], table ? tables.data() + offset : nullptr, table ? len : 0};
    params[i] = hso::LowerParams{n_int, q[6], q[7], q[8], kind, q[10], init, static_cast<int64_t>(q[12]), q[13],
                                 objective, trunc};
    n1max = n_int + 1 > n1max ? n_int + 1 : n1max;
  }
  return run_batch(kernel, psi, rp, maps.data(), params.data(), np, n1max);
}

constexpr const char* kLowerManyDoc = R"doc(The HSO lower level for a batch of candidates of several problems.

The contract of hso.fast.reference_lower.lower_solve_many: psi [B, 3]; rows [B] int64, the problem each candidate
solves; problems [P, 16] float64, one row per problem: family, a, b, table offset, table length, N, gap, d_min,
gamma, kind, p, init, maxiter, xtol, objective, truncNum (codes as lower_solve); tables: the vp-table problems'
log-alpha tables back to back. Returns lower_solve's tuple with t and lambdas [B, max N + 1], a candidate with a
smaller N padded with NaN after its last point.

Raises:
    ValueError: as lower_solve for any problem, a row that names no problem, or a table outside tables.
)doc";

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "hso's compiled kernels (private; use hso.fast). The math is documented in hso.fast.reference.";

  // the integer codes the kernels read, as the headers define them (tests/test_codes.py holds them against
  // hso.fast.codes, the Python side's one source)
  py::dict family, init, objective, kind;
  family["vp_discrete"] = hso::FAMILY_VP_TABLE;
  family["vp_linear"] = hso::FAMILY_VP_LINEAR;
  family["vp_cosine"] = hso::FAMILY_VP_COSINE;
  family["edm"] = hso::FAMILY_EDM;
  family["flow"] = hso::FAMILY_FLOW;
  init["edm_rho"] = hso::INIT_EDM_RHO;
  init["logSNR"] = hso::INIT_LOGSNR;
  init["time_uniform"] = hso::INIT_TIME_UNIFORM;
  init["time_quadratic"] = hso::INIT_TIME_QUADRATIC;
  objective["mep"] = hso::OBJECTIVE_MEP;
  objective["dmn"] = hso::OBJECTIVE_DMN;
  kind["vp"] = hso::KIND_VP;
  kind["ve"] = hso::KIND_VE;
  kind["flow"] = hso::KIND_FLOW;
  py::dict codes;
  codes["family"] = family;
  codes["init"] = init;
  codes["objective"] = objective;
  codes["kind"] = kind;
  m.attr("CODES") = codes;

  m.def(
      "mep_and_grad",
      [](const InArray& lambdas, int kind, double p, bool hessian) {
        return mep_and_grad_with(&hso::mep_forward_cpu, lambdas, kind, p, hessian);
      },
      py::arg("lambdas"), py::arg("kind"), py::arg("p") = 2.0, py::arg("hessian") = false, kMepDoc);

  m.def(
      "dmn_and_grad",
      [](const InArray& lambdas, int kind, double p, int64_t trunc) {
        return dmn_and_grad_with(&hso::dmn_forward_cpu, lambdas, kind, p, trunc);
      },
      py::arg("lambdas"), py::arg("kind"), py::arg("p"), py::arg("trunc"), kDmnDoc);

  m.def("lower_solve", [](const InArray& psi, int family, double a, double b, const InArray& table, int64_t n_int,
                          double gap, double d_min, double gamma, int kind, double p, int init, int64_t maxiter,
                          double xtol, int objective, int64_t trunc) {
          return lower_solve_with(&hso::lower_solve_batch_cpu, psi, family, a, b, table, n_int, gap, d_min, gamma,
                                  kind, p, init, maxiter, xtol, objective, trunc);
        }, py::arg("psi"), py::arg("family"), py::arg("a"), py::arg("b"),
        py::arg("table"), py::arg("n_int"), py::arg("gap"), py::arg("d_min"), py::arg("gamma"), py::arg("kind"),
        py::arg("p"), py::arg("init"), py::arg("maxiter"), py::arg("xtol"), py::arg("objective") = 0,
        py::arg("trunc") = 0, kLowerDoc);

  m.def("lower_solve_many", [](const InArray& psi, const RowsArray& rows, const InArray& problems,
                               const InArray& tables) {
          return lower_solve_many_with(&hso::lower_solve_batch_cpu, psi, rows, problems, tables);
        }, py::arg("psi"), py::arg("rows"), py::arg("problems"), py::arg("tables"), kLowerManyDoc);

#if defined(HSO_WITH_CUDA)
  m.def("lower_solve_many_cuda", [](const InArray& psi, const RowsArray& rows, const InArray& problems,
                                    const InArray& tables) {
          return lower_solve_many_with(&hso::lower_solve_batch_cuda_from_host, psi, rows, problems, tables);
        }, py::arg("psi"), py::arg("rows"), py::arg("problems"), py::arg("tables"),
        "lower_solve_many on the current CUDA device, from and to host arrays (one launch for every problem).\n\n"
        "Raises:\n    ValueError: as lower_solve_many.\n    RuntimeError: any CUDA error, with the runtime's message.");
  m.def(
      "mep_and_grad_cuda",
      [](const InArray& lambdas, int kind, double p, bool hessian) {
        return mep_and_grad_with(&hso::mep_forward_cuda_from_host, lambdas, kind, p, hessian);
      },
      py::arg("lambdas"), py::arg("kind"), py::arg("p") = 2.0, py::arg("hessian") = false,
      "mep_and_grad on the current CUDA device, from and to host arrays (copies both ways per call).\n\n"
      "Raises:\n    ValueError: as mep_and_grad.\n    RuntimeError: any CUDA error, with the runtime's message.");
  m.def(
      "dmn_and_grad_cuda",
      [](const InArray& lambdas, int kind, double p, int64_t trunc) {
        return dmn_and_grad_with(&hso::dmn_forward_cuda_from_host, lambdas, kind, p, trunc);
      },
      py::arg("lambdas"), py::arg("kind"), py::arg("p"), py::arg("trunc"),
      "dmn_and_grad on the current CUDA device, from and to host arrays (copies both ways per call).\n\n"
      "Raises:\n    ValueError: as dmn_and_grad.\n    RuntimeError: any CUDA error, with the runtime's message.");
  m.def("lower_solve_cuda", [](const InArray& psi, int family, double a, double b, const InArray& table,
                               int64_t n_int, double gap, double d_min, double gamma, int kind, double p, int init,
                               int64_t maxiter, double xtol, int objective, int64_t trunc) {
          return lower_solve_with(&hso::lower_solve_batch_cuda_from_host, psi, family, a, b, table, n_int, gap,
                                  d_min, gamma, kind, p, init, maxiter, xtol, objective, trunc);
        }, py::arg("psi"), py::arg("family"), py::arg("a"), py::arg("b"), py::arg("table"), py::arg("n_int"),
        py::arg("gap"), py::arg("d_min"), py::arg("gamma"), py::arg("kind"), py::arg("p"), py::arg("init"),
        py::arg("maxiter"), py::arg("xtol"), py::arg("objective") = 0, py::arg("trunc") = 0,
        "lower_solve on the current CUDA device, from and to host arrays.\n\nRaises:\n    ValueError: as "
        "lower_solve.\n    RuntimeError: any CUDA error, with the runtime's message.");
  m.def("cuda_device_count", &hso_cuda_device_count,
        "Number of visible CUDA devices; 0 when the runtime finds none (never raises).");
#endif

  m.def(
      "build_info",
      []() {
        py::dict info;
#if defined(HSO_WITH_OPENMP)
        info["openmp"] = true;
        info["max_threads"] = omp_get_max_threads();
#else
        info["openmp"] = false;
        info["max_threads"] = 1;
#endif
#if defined(HSO_WITH_CUDA)
        info["cuda"] = true;
#else
        info["cuda"] = false;
#endif
        info["compiler"] = compiler_name();
        return info;
      },
      "How this module was built: {'openmp': bool, 'cuda': bool, 'max_threads': int, 'compiler': str}.");
}
