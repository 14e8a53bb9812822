#include "ops/onednn.h"

namespace gradformer::onednn {

const dnnl::engine& engine() {
  static const dnnl::engine cpu{dnnl::engine::kind::cpu, 0};
  return cpu;
}

dnnl::stream& stream() {
  thread_local dnnl::stream on_this_thread{engine()};
  return on_this_thread;
}

}  // namespace gradformer::onednn
