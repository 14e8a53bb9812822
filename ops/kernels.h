// Loop templates shared by the op families: map a function over one or two (broadcast) operands into a new
// contiguous tensor. The op files write the scalar math; this file decides how the elements are walked.
#pragma once

#include "autograd/dispatch.h"
#include "autograd/strided.h"
#include "autograd/tensor.h"

namespace gradformer::kernels {

// The common shape of a and b under NumPy broadcasting; a ShapeError names op, both shapes and the dimension.
Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op);
// Strides that read t as if expanded to `shape` (0 along broadcast dimensions).
Shape broadcast_strides(const Tensor& t, const Shape& shape);

// out[i] = f(x[i]) for every element, out contiguous, of dtype Out.
template <class Out, class In, class F>
Tensor map(const Tensor& x, F f) {
  Tensor out = empty(x.shape(), dtype_of<Out>());
  StridedLayout<2> layout{x.shape(), {out.strides(), x.strides()}};
  for_each_run<2>(layout, {out.raw_data(), const_cast<std::byte*>(x.read_only_raw_data())}, {sizeof(Out), sizeof(In)}, true,
                  [&f](std::array<std::byte*, 2> p, int64_t n, const std::array<int64_t, 2>& s) {
                    Out* o = reinterpret_cast<Out*>(p[0]);
                    const In* a = reinterpret_cast<const In*>(p[1]);
                    if (s[1] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i * s[1]]);
                    }
                  });
  return out;
}

// out[i] = f(a[i], b[i]) over the broadcast shape of a and b.
template <class Out, class InA, class InB, class F>
Tensor map2(const Tensor& a, const Tensor& b, std::string_view op, F f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = empty(shape, dtype_of<Out>());
  StridedLayout<3> layout{shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape)}};
  for_each_run<3>(layout, {out.raw_data(), const_cast<std::byte*>(a.read_only_raw_data()), const_cast<std::byte*>(b.read_only_raw_data())}, {sizeof(Out), sizeof(InA), sizeof(InB)}, true,
                  [&f](std::array<std::byte*, 3> p, int64_t n, const std::array<int64_t, 3>& s) {
                    Out* o = reinterpret_cast<Out*>(p[0]);
                    const InA* x = reinterpret_cast<const InA*>(p[1]);
                    const InB* y = reinterpret_cast<const InB*>(p[2]);
                    if (s[1] == 1 && s[2] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i]);
                    } else if (s[1] == 1 && s[2] == 0) {
                      const InB v = *y;
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], v);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i * s[1]], y[i * s[2]]);
                    }
                  });
  return out;
}

// out[i] = f(a[i], b[i], c[i]) over the broadcast shape of all three.
// A select on a bool mask (where, masked_fill) is written here, with the mask read as uint8_t (bool storage
// holds 0 or 1) and the value a scalar third operand: GCC turns it into a vector blend. Read as bool, or through
// map2 with a captured value, it branched per element (about 2 ns each on a random mask, 40x slower).
template <class Out, class InA, class InB, class InC, class F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, std::string_view op, F f) {
  const Shape shape = broadcast_shapes(broadcast_shapes(a.shape(), b.shape(), op), c.shape(), op);
  Tensor out = empty(shape, dtype_of<Out>());
  StridedLayout<4> layout{
      shape, {out.strides(), broadcast_strides(a, shape), broadcast_strides(b, shape), broadcast_strides(c, shape)}};
  for_each_run<4>(layout, {out.raw_data(), const_cast<std::byte*>(a.read_only_raw_data()), const_cast<std::byte*>(b.read_only_raw_data()), const_cast<std::byte*>(c.read_only_raw_data())},
                  {sizeof(Out), sizeof(InA), sizeof(InB), sizeof(InC)}, true,
                  [&f](std::array<std::byte*, 4> p, int64_t n, const std::array<int64_t, 4>& s) {
                    Out* o = reinterpret_cast<Out*>(p[0]);
                    const InA* x = reinterpret_cast<const InA*>(p[1]);
                    const InB* y = reinterpret_cast<const InB*>(p[2]);
                    const InC* z = reinterpret_cast<const InC*>(p[3]);
                    if (s[1] == 1 && s[2] == 1 && s[3] == 1) {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i], z[i]);
                    } else if (s[1] == 1 && s[2] == 1 && s[3] == 0) {
                      const InC v = *z;
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i], y[i], v);
                    } else {
                      for (int64_t i = 0; i < n; ++i) o[i] = f(x[i * s[1]], y[i * s[2]], z[i * s[3]]);
                    }
                  });
  return out;
}

// Sums t over the dimensions it was broadcast along, giving a tensor of `shape` (the backward of broadcasting).
Tensor sum_to(const Tensor& t, const Shape& shape);

// Sum over `axes` (already normalised, unique) keeping them as size-1 dimensions.
Tensor sum_keepdim(const Tensor& t, const std::vector<int64_t>& axes);

}  // namespace gradformer::kernels
