#include "ops/kernels.h"

#include <algorithm>

namespace gradformer::kernels {

Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1)
      fail<ShapeError>(op, "shapes {} and {} cannot be broadcast: dimension {} is {} in one and {} in the other",
                       shape_str(a), shape_str(b), static_cast<int64_t>(i) - static_cast<int64_t>(rank), da, db);
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t d = 0; d < t.shape().size(); ++d)
    strides[lead + d] = t.shape()[d] == 1 ? 0 : t.strides()[d];
  return strides;
}

Tensor sum_keepdim(const Tensor& t, const std::vector<int64_t>& axes) {
  Shape out_shape = t.shape();
  for (int64_t axis : axes) out_shape[static_cast<size_t>(axis)] = 1;
  Tensor out = zeros(out_shape, t.dtype());
  Shape out_strides = broadcast_strides(out, t.shape());
  visit_floating(t.dtype(), "sum", [&]<class T>(std::type_identity<T>) {
    StridedLayout<2> layout{t.shape(), {out_strides, t.strides()}};
    // Output strides are 0 along reduced axes, so runs may share an output element: no parallel split.
    for_each_run<2>(layout, {out.raw_data(), const_cast<std::byte*>(t.read_only_raw_data())}, {sizeof(T), sizeof(T)}, false,
                    [](std::array<std::byte*, 2> p, int64_t n, const std::array<int64_t, 2>& s) {
                      T* o = reinterpret_cast<T*>(p[0]);
                      const T* x = reinterpret_cast<const T*>(p[1]);
                      if (s[0] == 0) {
                        T acc = 0;
                        if (s[1] == 1) {
                          for (int64_t i = 0; i < n; ++i) acc += x[i];
                        } else {
                          for (int64_t i = 0; i < n; ++i) acc += x[i * s[1]];
                        }
                        *o += acc;
                      } else {
                        for (int64_t i = 0; i < n; ++i) o[i * s[0]] += x[i * s[1]];
                      }
                    });
  });
  return out;
}

Tensor sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const size_t lead = t.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t d = 0; d < t.shape().size(); ++d)
    if (d < lead || (shape[d - lead] == 1 && t.shape()[d] != 1)) axes.push_back(static_cast<int64_t>(d));
  Tensor summed = sum_keepdim(t, axes);
  return summed.as_strided(shape, contiguous_strides(shape), summed.offset());
}

}  // namespace gradformer::kernels
