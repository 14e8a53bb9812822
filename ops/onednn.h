// The one oneDNN CPU engine that the ops' kernels share (the GEMM in gemm.cpp, the activations in
// elementwise.cpp), with a stream on it for each thread. Not an op and not a kernel: only where oneDNN starts.
#pragma once

#include <dnnl.hpp>

namespace gradformer::onednn {

const dnnl::engine& engine();
// This thread's in-order stream on engine(): a stream is not meant to take primitives from several threads at
// once, and creating one per call would cost a little on every product.
dnnl::stream& stream();

}  // namespace gradformer::onednn
