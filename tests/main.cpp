// The unit suite's main: doctest's own, after making sure OpenBLAS runs kernels for this CPU (ops/threads.h), as
// every program's main does, so that the suite's products take the paths users' products take (test_matmul.cpp
// checks that it did).
#define DOCTEST_CONFIG_IMPLEMENT
#include "ops/threads.h"

#include <doctest/doctest.h>

int main(int argc, char** argv) {
  gradformer::use_openblas_kernels_for_this_cpu(argv);
  return doctest::Context(argc, argv).run();
}
