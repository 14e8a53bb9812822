// The unit suite's main: doctest's own, after making sure OpenBLAS runs kernels for this CPU (ops/threads.h),
// since the f64 gradient checks spend much of their time in dgemm.
#define DOCTEST_CONFIG_IMPLEMENT
#include "ops/threads.h"

#include <doctest/doctest.h>

int main(int argc, char** argv) {
  gradformer::use_openblas_kernels_for_this_cpu(argv);
  return doctest::Context(argc, argv).run();
}
