// The initialisers: draw in row-major order straight into contiguous tensors, through a contiguous copy
// otherwise, so the same seed gives the same values whatever the strides.
#include "nn/init.h"

#include "autograd/dispatch.h"
#include "autograd/engine.h"

namespace gradformer::nn::init {

namespace {

// Writes draw() into every element of t, in row-major order.
template <class Draw>
Tensor fill_with(const Tensor& t, std::string_view op, Draw&& draw) {
  NoGradGuard no_grad;
  visit_floating(t.dtype(), op, [&]<class T>(std::type_identity<T>) {
    const Tensor dense = t.is_contiguous() ? t.detach() : empty(t.shape(), t.dtype());
    T* p = dense.data_ptr<T>();
    const int64_t n = dense.numel();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(draw());
    if (!t.is_contiguous()) t.detach().copy_(dense);
  });
  return t;
}

int64_t fan_of(const Tensor& t, FanMode mode) {
  const Fans fans = calculate_fan_in_and_fan_out(t);
  return mode == FanMode::fan_in ? fans.fan_in : fans.fan_out;
}

double leaky_relu_gain(double a) { return std::sqrt(2.0 / (1.0 + a * a)); }

}  // namespace

Fans calculate_fan_in_and_fan_out(const Tensor& t) {
  if (t.dim() < 2)
    fail<ValueError>("init", "fan in and fan out need a tensor of at least 2 dimensions, got shape {}",
                     shape_str(t.shape()));
  int64_t receptive_field = 1;
  for (int64_t d = 2; d < t.dim(); ++d) receptive_field *= t.shape()[static_cast<size_t>(d)];
  return {t.shape()[1] * receptive_field, t.shape()[0] * receptive_field};
}

Tensor uniform_(const Tensor& t, double low, double high, Generator& gen) {
  if (!(low <= high)) fail<ValueError>("uniform_", "low {} must not exceed high {}", low, high);
  return fill_with(t, "uniform_", [&] { return gen.uniform(low, high); });
}

Tensor normal_(const Tensor& t, double mean, double stddev, Generator& gen) {
  if (!(stddev >= 0)) fail<ValueError>("normal_", "stddev {} must be non-negative", stddev);
  return fill_with(t, "normal_", [&] { return gen.normal(mean, stddev); });
}

Tensor constant_(const Tensor& t, double value) {
  if (!is_floating(t.dtype())) fail<DTypeError>("constant_", "expects f32 or f64, got {}", dtype_name(t.dtype()));
  t.detach().fill_(value);
  return t;
}

Tensor zeros_(const Tensor& t) { return constant_(t, 0.0); }
Tensor ones_(const Tensor& t) { return constant_(t, 1.0); }

Tensor xavier_uniform_(const Tensor& t, double gain, Generator& gen) {
  if (t.numel() == 0) return t;
  const Fans fans = calculate_fan_in_and_fan_out(t);
  const double stddev = gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out));
  const double bound = std::sqrt(3.0) * stddev;
  return uniform_(t, -bound, bound, gen);
}

Tensor xavier_normal_(const Tensor& t, double gain, Generator& gen) {
  if (t.numel() == 0) return t;
  const Fans fans = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fans.fan_in + fans.fan_out)), gen);
}

Tensor kaiming_uniform_(const Tensor& t, double a, FanMode mode, Generator& gen) {
  if (t.numel() == 0) return t;
  const double bound = leaky_relu_gain(a) * std::sqrt(3.0 / static_cast<double>(fan_of(t, mode)));
  return uniform_(t, -bound, bound, gen);
}

Tensor kaiming_normal_(const Tensor& t, double a, FanMode mode, Generator& gen) {
  if (t.numel() == 0) return t;
  return normal_(t, 0.0, leaky_relu_gain(a) / std::sqrt(static_cast<double>(fan_of(t, mode))), gen);
}

}  // namespace gradformer::nn::init
