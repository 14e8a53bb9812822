#include "ops/threads.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace gradformer {

int set_num_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
  return n;
}

int num_threads() { return omp_get_max_threads(); }

std::string openblas_kernels_for_this_cpu() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
  return "";
}

std::string openblas_kernels_in_use() { return openblas_get_corename(); }

void use_openblas_kernels_for_this_cpu(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  // A CPU with AVX2 that OpenBLAS calls Prescott is one it did not recognise: a real Prescott has no AVX2.
  const std::string wanted = openblas_kernels_for_this_cpu();
  if (wanted.empty() || openblas_kernels_in_use() != "Prescott") return;
  if (setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE");  // execv failed: carry on as loaded, and leave the environment as it was
}

}  // namespace gradformer
