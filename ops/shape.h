// Shape ops: views on the same storage wherever the strides allow it, with their backward.
#pragma once

#include "autograd/tensor.h"

namespace gradformer {

// One -1 in the shape is inferred. reshape copies when the strides do not allow a view; view throws instead.
Tensor reshape(const Tensor& x, Shape shape);
Tensor view(const Tensor& x, Shape shape);
Tensor transpose(const Tensor& x, int64_t axis0, int64_t axis1);

}  // namespace gradformer
