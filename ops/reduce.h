// Reductions over any set of axes (negative axes count from the end; an empty list means all axes).
#pragma once

#include "autograd/tensor.h"

#include <vector>

namespace gradformer {

Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdim = false);

// Normalises and sorts axes (empty = all), rejecting duplicates and out-of-range axes with op's name.
std::vector<int64_t> reduction_axes(const Tensor& x, std::vector<int64_t> axes, std::string_view op);
// The shape after reducing `axes` (normalised) with or without keepdim.
Shape reduced_shape(const Shape& shape, const std::vector<int64_t>& axes, bool keepdim);

}  // namespace gradformer
