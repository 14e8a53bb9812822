// Tensor printing in PyTorch's layout, truncated for big tensors.
#include "autograd/dispatch.h"
#include "autograd/engine.h"
#include "autograd/tensor.h"

#include <cmath>

namespace gradformer {
namespace {

constexpr int64_t kSummarizeAbove = 1000;
constexpr int64_t kEdgeItems = 3;

void print_values(std::string& out, const Tensor& t, size_t axis, int64_t offset, bool summarize, int indent) {
  const int64_t size = t.shape()[axis];
  const bool last_axis = axis + 1 == t.shape().size();
  out += '[';
  for (int64_t i = 0; i < size; ++i) {
    if (summarize && size > 2 * kEdgeItems && i == kEdgeItems) {
      out += last_axis ? "..., " : fmt::format("...,\n{:{}}", "", indent + 1);
      i = size - kEdgeItems;
    }
    const int64_t at = offset + i * t.strides()[axis];
    if (last_axis) {
      visit_stored(t.dtype(), [&]<class T>(std::type_identity<T>) {
        const T v = reinterpret_cast<const T*>(t.storage()->read_only_data())[at];
        if constexpr (std::is_same_v<T, bool>)
          out += v ? "true" : "false";
        else if constexpr (std::is_integral_v<T>)
          out += fmt::format("{}", v);
        else
          out += fmt::format("{:.4f}", static_cast<double>(v));
      });
    } else {
      print_values(out, t, axis + 1, at, summarize, indent + 1);
    }
    if (i + 1 < size) out += last_axis ? ", " : fmt::format(",\n{:{}}", "", indent + 1);
  }
  out += ']';
}

}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  std::string out = "tensor(";
  if (t.dim() == 0) {
    out += visit_stored(t.dtype(), [&]<class T>(std::type_identity<T>) -> std::string {
      const T v = reinterpret_cast<const T*>(t.storage()->read_only_data())[t.offset()];
      if constexpr (std::is_same_v<T, bool>) return v ? "true" : "false";
      else if constexpr (std::is_integral_v<T>) return fmt::format("{}", v);
      else return fmt::format("{:.4f}", static_cast<double>(v));
    });
  } else {
    print_values(out, t, 0, t.offset(), t.numel() > kSummarizeAbove, 7);
  }
  if (t.dim() > 0 && t.numel() > kSummarizeAbove) out += fmt::format(", size={}", shape_str(t.shape()));
  out += fmt::format(", dtype={}", dtype_name(t.dtype()));
  if (t.grad_fn())
    out += fmt::format(", grad_fn={}", t.grad_fn()->op());
  else if (t.requires_grad())
    out += ", requires_grad=true";
  return out + ")";
}

}  // namespace gradformer
