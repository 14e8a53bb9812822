// Parameter initialisers, in place, with PyTorch's formulas (torch.nn.init). Each draws from the Generator it is
// given (the thread's current_generator() when none is) under NoGradGuard and returns the same tensor handle, so
//   weight_ = register_parameter("weight", init::kaiming_uniform_(empty({out, in})));
// reads as one line. Fans follow PyTorch's weight layout: dimension 0 is fan-out, dimension 1 fan-in, and any
// further dimensions multiply both (the receptive field).
//
// Not a random-tensor factory (randn / uniform live with Tensor), and not per-layer defaults (each layer
// picks its initialiser).
#pragma once

#include "autograd/generator.h"
#include "autograd/tensor.h"

#include <cmath>

namespace gradformer::nn::init {

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};
// As torch.nn.init._calculate_fan_in_and_fan_out: a ValueError below two dimensions.
Fans calculate_fan_in_and_fan_out(const Tensor& t);

enum class FanMode { fan_in, fan_out };

// Every initialiser takes an f32 or f64 tensor (any strides) and leaves a zero-element tensor as it is.
Tensor uniform_(const Tensor& t, double low = 0.0, double high = 1.0, Generator& gen = current_generator());
Tensor normal_(const Tensor& t, double mean = 0.0, double stddev = 1.0, Generator& gen = current_generator());
Tensor constant_(const Tensor& t, double value);
Tensor zeros_(const Tensor& t);
Tensor ones_(const Tensor& t);
// U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
Tensor xavier_uniform_(const Tensor& t, double gain = 1.0, Generator& gen = current_generator());
// N(0, std²), std = gain * sqrt(2 / (fan_in + fan_out)).
Tensor xavier_normal_(const Tensor& t, double gain = 1.0, Generator& gen = current_generator());
// For a leaky ReLU of negative slope a: gain = sqrt(2 / (1 + a²)), U(-b, b) with b = gain * sqrt(3 / fan).
// The default a = sqrt(5) is what nn.Linear uses, giving b = 1 / sqrt(fan_in).
Tensor kaiming_uniform_(const Tensor& t, double a = std::sqrt(5.0), FanMode mode = FanMode::fan_in,
                        Generator& gen = current_generator());
// N(0, std²), std = gain / sqrt(fan) with the same gain.
Tensor kaiming_normal_(const Tensor& t, double a = 0.0, FanMode mode = FanMode::fan_in,
                       Generator& gen = current_generator());

}  // namespace gradformer::nn::init
