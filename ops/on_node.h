// on_node: how a fused op's backward, when it is itself differentiated (grad mode on during backward), reads a
// tensor it saved without its graph. Internal to ops/ (not installed).
#pragma once

#include "autograd/engine.h"

#include <memory>

namespace gradformer {

// `values` in the place of a tensor in the graph: a new handle on values' storage whose gradient flows into `node`
// (a constant when node is null). For an op's own output, placed on the op's own node (which the backward holds
// weakly, since the node owns the backward), or an operand saved in another form (linear's bf16 rounding of x)
// on the node of that operand. `values` must have the shape and dtype of node's output.
inline Tensor on_node(const Tensor& values, std::shared_ptr<Node> node) {
  Tensor placed = values.detach();
  placed.impl().grad_fn = std::move(node);
  return placed;
}

}  // namespace gradformer
