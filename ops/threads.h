// The one place that decides how many threads the kernels use: OpenMP's team (our loops and oneDNN, which runs
// on GNU OpenMP here) and OpenBLAS's own pthreads pool, set together so the two never oversubscribe the cores.
// And the one place that sees to it that OpenBLAS runs kernels made for this CPU.
#pragma once

#include <string>

namespace gradformer {

// n <= 0 means all cores. Returns the count in effect.
int set_num_threads(int n);
int num_threads();

// OpenBLAS picks its kernels by the CPU's model number once, when it loads. 0.3.21 (Debian 12's) does not know
// models newer than itself (such as Intel family 6 model 207) and falls back to its generic Prescott (SSE3)
// kernels, which run sgemm and dgemm at a fifth to a third of the speed of its AVX-512 ones (measured 2026-12-07
// on that model, two threads, n = 64 to 1024: sgemm 28-48 against 149-206 GFLOP/s, dgemm 15-26 against 67-98). Called first
// thing in main(), this restarts the program (execv of /proc/self/exe with the same argv) with
// OPENBLAS_CORETYPE set to openblas_kernels_for_this_cpu(), which OpenBLAS reads when it loads. It returns
// without restarting when OpenBLAS knew the CPU, when OPENBLAS_CORETYPE is already set (so there is at most one
// restart, and a user's own choice stands), or when execv fails (the program then runs on the slow kernels).
void use_openblas_kernels_for_this_cpu(char** argv);

// The OpenBLAS kernels that this CPU's instructions allow: "SkylakeX" with AVX-512 (F, BW, DQ, VL), "Haswell"
// with AVX2 and FMA, else "" (nothing better than what OpenBLAS chose).
std::string openblas_kernels_for_this_cpu();
// The kernels OpenBLAS runs in this process (openblas_get_corename: "SkylakeX", "Prescott", ...).
std::string openblas_kernels_in_use();

}  // namespace gradformer
