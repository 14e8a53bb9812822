// The one place that decides how many threads the kernels use: OpenMP's team (our loops and oneDNN, which runs
// on GNU OpenMP here) and OpenBLAS's own pthreads pool, set together so the two never oversubscribe the cores.
#pragma once

namespace gradformer {

// n <= 0 means all cores. Returns the count in effect.
int set_num_threads(int n);
int num_threads();

}  // namespace gradformer
