// The private extension module hso._C: numpy buffers in, new numpy arrays out, for the kernel contract written in
// hso/fast/reference.py. Shape and kind checks live here because the kernels trust their buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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

using LowerKernel = void (*)(const double*, int64_t, const hso::ScheduleMap&, const hso::LowerParams&, double*,
                            double*, double*, double*, int64_t*, bool*);

py::tuple lower_solve_with(LowerKernel kernel, const InArray& psi, int family, double a, double b,
                           const InArray& table, int64_t n_int, double gap, double d_min, double gamma, int kind,
                           double p, int init, int64_t maxiter, double xtol, int objective, int64_t trunc) {
  if (psi.ndim() != 2 || psi.shape(1) != 3) throw std::invalid_argument("psi must be [B, 3]");
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
  if (family == 0 && (table.ndim() != 1 || table.shape(0) < 2)) {
    throw std::invalid_argument("the vp table family needs a 1-D log-alpha table with >= 2 entries");
  }
  const py::ssize_t B = psi.shape(0);
  const py::ssize_t n1 = n_int + 1;
  OutArray t({B, n1});
  OutArray lam({B, n1});
  OutArray objective_out(B);
  OutArray penalty(B);
  py::array_t<int64_t> iters(B);
  py::array_t<bool> feasible(B);
  hso::ScheduleMap s{family, a, b, family == 0 ? table.data() : nullptr, family == 0 ? table.shape(0) : 0};
  hso::LowerParams P{n_int, gap, d_min, gamma, kind, p, init, maxiter, xtol, objective, trunc};
  const double* ps = psi.data();
  double* tp = t.mutable_data();
  double* lp = lam.mutable_data();
  double* op = objective_out.mutable_data();
  double* pp = penalty.mutable_data();
  int64_t* ip = iters.mutable_data();
  bool* fp = feasible.mutable_data();
  {
    py::gil_scoped_release release;
    kernel(ps, B, s, P, tp, lp, op, pp, ip, fp);
  }
  return py::make_tuple(t, lam, objective_out, penalty, iters, feasible);
}

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
          return lower_solve_with(&hso::lower_solve_cpu, psi, family, a, b, table, n_int, gap, d_min, gamma, kind, p,
                                  init, maxiter, xtol, objective, trunc);
        }, py::arg("psi"), py::arg("family"), py::arg("a"), py::arg("b"),
        py::arg("table"), py::arg("n_int"), py::arg("gap"), py::arg("d_min"), py::arg("gamma"), py::arg("kind"),
        py::arg("p"), py::arg("init"), py::arg("maxiter"), py::arg("xtol"), py::arg("objective") = 0,
        py::arg("trunc") = 0, kLowerDoc);

#if defined(HSO_WITH_CUDA)
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
          return lower_solve_with(&hso::lower_solve_cuda_from_host, psi, family, a, b, table, n_int, gap, d_min, gamma,
                                  kind, p, init, maxiter, xtol, objective, trunc);
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
