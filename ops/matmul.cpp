// matmul: forward and backward over the batched GEMM kernel. Leading dimensions broadcast by stride 0, a
// [.., M, K] x [K, N] product is folded into one 2-D GEMM (as PyTorch does), and the backward products take
// their transposed operands as strided views, which the kernel turns into transpose flags.
#include "ops/matmul.h"

#include "autograd/engine.h"
#include "ops/autocast_products.h"
#include "ops/gemm.h"
#include "ops/kernels.h"
#include "ops/on_node.h"
#include "ops/reduce.h"
#include "ops/shape.h"

namespace gradformer {
namespace {

Shape leading(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

// t's matrices as `batch` matrices with one batch stride, copying t (expanded) only when its leading strides
// cannot be described by one stride. `owner` keeps a copy alive.
gemm::Matrix batched_operand(const Tensor& t, const Shape& batch_shape, Tensor& owner) {
  Shape shape = batch_shape;
  shape.push_back(t.shape()[static_cast<size_t>(t.dim() - 2)]);
  shape.push_back(t.shape()[static_cast<size_t>(t.dim() - 1)]);
  Tensor expanded = t.as_strided(shape, kernels::broadcast_strides(t, shape), t.offset());
  const size_t lead = batch_shape.size();
  int64_t batch_stride = 0;
  bool single_stride = true;
  bool all_zero = true;
  for (size_t d = 0; d < lead; ++d) all_zero = all_zero && (expanded.strides()[d] == 0 || shape[d] == 1);
  if (!all_zero) {
    // Dimensions of size 1 never move; the others must nest as one contiguous run of matrices.
    int64_t expected = -1;
    for (size_t d = lead; d-- > 0;) {
      if (shape[d] == 1) continue;
      if (expected < 0) {
        batch_stride = expanded.strides()[d];
        expected = batch_stride * shape[d];
      } else if (expanded.strides()[d] != expected) {
        single_stride = false;
        break;
      } else {
        expected *= shape[d];
      }
    }
    if (batch_stride == 0) single_stride = false;
  }
  // A matrix repeated along its own rows or columns (an expanded vector) has stride 0 there: oneDNN and
  // dgemm both need real strides, so such an operand is materialised too.
  const bool degenerate = (shape[lead] > 1 && expanded.strides()[lead] == 0) ||
                          (shape[lead + 1] > 1 && expanded.strides()[lead + 1] == 0);
  if (!single_stride || degenerate) {
    owner = empty(shape, t.dtype());
    owner.copy_(expanded);
    expanded = owner;
    batch_stride = expanded.shape()[lead] * expanded.shape()[lead + 1];
  }
  return gemm::Matrix{expanded.raw_data(), shape[lead], shape[lead + 1], expanded.strides()[lead],
                      expanded.strides()[lead + 1], batch_stride};
}

// The forward product of two tensors of rank >= 2 with compatible leading dimensions; no graph.
Tensor product(const Tensor& a, const Tensor& b) {
  const Shape batch_shape = kernels::broadcast_shapes(leading(a), leading(b), op_name(Op::matmul));
  const int64_t m = a.shape()[static_cast<size_t>(a.dim() - 2)];
  const int64_t n = b.shape()[static_cast<size_t>(b.dim() - 1)];
  Shape out_shape = batch_shape;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = empty(out_shape, a.dtype());
  Tensor owner_a, owner_b;
  const gemm::Matrix ma = batched_operand(a, batch_shape, owner_a);
  const gemm::Matrix mb = batched_operand(b, batch_shape, owner_b);
  const gemm::Matrix mc{out.raw_data(), m, n, n, 1, m * n};
  gemm::multiply(a.dtype(), numel_of(batch_shape), ma, mb, mc,
                 {.precision = autocast::product_precision(Op::matmul, a.dtype(), ma, mb, mc)});
  return out;
}

// t summed over the dimensions it was broadcast along to become `shape`, by ops that record: the backward of
// broadcasting when the backward itself is differentiated (kernels::sum_to records nothing).
Tensor recorded_sum_to(const Tensor& t, const Shape& shape) {
  if (t.shape() == shape) return t;
  const auto leading_dims = static_cast<int64_t>(t.shape().size() - shape.size());
  std::vector<int64_t> axes;
  for (int64_t d = 0; d < leading_dims; ++d) axes.push_back(d);
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] == 1 && t.shape()[static_cast<size_t>(leading_dims) + d] != 1)
      axes.push_back(leading_dims + static_cast<int64_t>(d));
  return reshape(sum(t, axes, true), shape);
}

Tensor batched_matmul(const Tensor& a, const Tensor& b) {
  Tensor out = product(a, b);
  // a and b are saved as they are, graph and all: a backward that is itself differentiated (grad mode on during
  // backward: create_graph) multiplies them with the differentiable matmul, so that its products record.
  return record(out, Op::matmul, {a, b}, [a, b](const Tensor& dout, InputGrads& g) {
    // dA = dC · Bᵀ, dB = Aᵀ · dC, each summed over the leading dimensions its operand was broadcast along.
    if (grad_mode_enabled()) {
      if (g.needs(0)) g[0] = recorded_sum_to(matmul(dout, transpose(b, -1, -2)), a.shape());
      if (g.needs(1)) g[1] = recorded_sum_to(matmul(transpose(a, -1, -2), dout), b.shape());
      return;
    }
    if (g.needs(0)) g[0] = kernels::sum_to(product(dout, transpose(b, -1, -2)), a.shape());
    if (g.needs(1)) g[1] = kernels::sum_to(product(transpose(a, -1, -2), dout), b.shape());
  });
}

// A bf16 matrix widened (exactly) to a dense f32 tensor of `shape`.
Tensor widened(const Tensor& rounded, const Shape& shape) {
  const Tensor dense = rounded.to(DType::f32);  // a new contiguous tensor
  return dense.as_strided(shape, contiguous_strides(shape), 0);
}

// linear's backward in differentiable ops, for a backward that is itself differentiated: dx = dy · W,
// dW = dyᵀ · x over all rows, db = Σ_rows dy. x is [..., in], dout [..., out].
void linear_backward_recorded(const Tensor& x, const Tensor& weight, const Tensor& dout, InputGrads& g) {
  const int64_t in_features = weight.size(1), out_features = weight.size(0);
  const Tensor dy = reshape(dout, {-1, out_features});  // [rows, out]
  if (g.needs(0)) g[0] = matmul(dout, weight);
  if (g.needs(1)) g[1] = matmul(transpose(dy, 0, 1), reshape(x, {-1, in_features}));
  if (g.needs(2)) g[2] = sum(dy, {0});
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    fail<DTypeError>(Op::matmul, "{} {} x {} {}: operands have different dtypes", dtype_name(a.dtype()),
                     shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
  if (!is_floating(a.dtype()))
    fail<DTypeError>(Op::matmul, "expects f32 or f64, got {}", dtype_name(a.dtype()));
  if (a.dim() == 0 || b.dim() == 0)
    fail<ShapeError>(Op::matmul, "{} x {}: both arguments need at least one dimension", shape_str(a.shape()),
                     shape_str(b.shape()));
  const int64_t ka = a.shape().back();
  const int64_t kb = b.dim() == 1 ? b.shape()[0] : b.shape()[static_cast<size_t>(b.dim() - 2)];
  if (ka != kb)
    fail<ShapeError>(Op::matmul, "{} x {}: inner dimensions {} and {} differ", shape_str(a.shape()),
                     shape_str(b.shape()), ka, kb);

  if (a.dim() == 1 || b.dim() == 1) {
    // A vector is a one-row (first) or one-column (second) matrix whose extra dimension leaves the result.
    const Tensor a2 = a.dim() == 1 ? reshape(a, {1, ka}) : a;
    const Tensor b2 = b.dim() == 1 ? reshape(b, {kb, 1}) : b;
    Tensor out = matmul(a2, b2);
    Shape shape(out.shape().begin(), out.shape().end() - 2);
    if (a.dim() != 1) shape.push_back(out.shape()[static_cast<size_t>(out.dim() - 2)]);
    if (b.dim() != 1) shape.push_back(out.shape().back());
    return reshape(out, shape);
  }
  if (b.dim() == 2 && a.dim() > 2) {
    // [..., M, K] x [K, N]: one GEMM over all rows, as a [rows, K] x [K, N] product.
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.shape()[1]);
    return reshape(batched_matmul(reshape(a, {-1, ka}), b), out_shape);
  }
  return batched_matmul(a, b);
}

Tensor bmm(const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype())
    fail<DTypeError>(Op::bmm, "{} {} x {} {}: operands have different dtypes", dtype_name(a.dtype()),
                     shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
  if (a.dim() != 3 || b.dim() != 3)
    fail<ShapeError>(Op::bmm, "{} x {}: both operands must be 3-D, [B, M, K] x [B, K, N]", shape_str(a.shape()),
                     shape_str(b.shape()));
  if (a.shape()[0] != b.shape()[0])
    fail<ShapeError>(Op::bmm, "{} x {}: batch sizes {} and {} differ", shape_str(a.shape()), shape_str(b.shape()),
                     a.shape()[0], b.shape()[0]);
  if (a.shape()[2] != b.shape()[1])
    fail<ShapeError>(Op::bmm, "{} x {}: inner dimensions {} and {} differ", shape_str(a.shape()), shape_str(b.shape()),
                     a.shape()[2], b.shape()[1]);
  return matmul(a, b);
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const bool bias_dtype_differs = bias.defined() && bias.dtype() != x.dtype();
  if (x.dtype() != weight.dtype() || bias_dtype_differs)
    fail<DTypeError>(Op::linear, "input {} {}, weight {} {}{}{}: dtypes differ", dtype_name(x.dtype()),
                     shape_str(x.shape()), dtype_name(weight.dtype()), shape_str(weight.shape()),
                     bias.defined() ? ", bias " : "", bias.defined() ? dtype_name(bias.dtype()) : "");
  if (!is_floating(x.dtype())) fail<DTypeError>(Op::linear, "expects f32 or f64, got {}", dtype_name(x.dtype()));
  if (weight.dim() != 2)
    fail<ShapeError>(Op::linear, "weight {} must be 2-D, [out_features, in_features]", shape_str(weight.shape()));
  if (x.dim() == 0) fail<ShapeError>(Op::linear, "input [] needs a feature dimension, [..., in_features]");
  const int64_t out_features = weight.shape()[0], in_features = weight.shape()[1];
  if (x.shape().back() != in_features)
    fail<ShapeError>(Op::linear, "input {} x weight {}: input features {} and weight in_features {} differ",
                     shape_str(x.shape()), shape_str(weight.shape()), x.shape().back(), in_features);
  if (bias.defined() && (bias.dim() != 1 || bias.shape()[0] != out_features))
    fail<ShapeError>(Op::linear, "bias {} does not fit weight {}: expected [{}]", shape_str(bias.shape()),
                     shape_str(weight.shape()), out_features);

  const int64_t rows = x.numel() / std::max<int64_t>(in_features, 1);
  // [rows, in], a view when strides allow
  const Tensor x2 = gemm::with_dense_matrices(reshape(x.detach(), {rows, in_features}));
  const Tensor w = gemm::with_dense_matrices(weight.detach());  // [out, in]
  const Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();  // the kernel reads a dense vector
  Tensor out = empty({rows, out_features}, x.dtype());
  // Wᵀ as an [in, out] matrix: W's row stride becomes the column stride.
  auto transposed = [](gemm::Matrix m) {
    std::swap(m.rows, m.cols);
    std::swap(m.row_stride, m.col_stride);
    return m;
  };
  // A leaf weight (a parameter) has its rounding cached, made once per optimizer step, so the plan counts it as
  // bf16 already: only x's rounding is this product's cost.
  gemm::Matrix w_planned = transposed(gemm::operand_of(w));
  w_planned.bf16 = weight.is_leaf();
  const gemm::Precision precision =
      autocast::product_precision(Op::linear, x.dtype(), gemm::operand_of(x2), w_planned, gemm::matrix_of(out));
  const bool in_bf16 = precision == gemm::Precision::bf16;
  // Under autocast the product reads bf16 operands: a parameter's cached rounding (made once per optimizer
  // step, not once per product) and x's rounding, which backward's dW = dyᵀ · x reads too. So x is saved in
  // bf16: half the bytes, and the same operand the forward used, as PyTorch's autocast saves its casts.
  const Tensor x_saved = in_bf16 ? gemm::rounded_to_bf16(x2) : x2;
  const Tensor w_read = !in_bf16 ? w : weight.is_leaf() ? autocast::cached_bf16_weight(w) : gemm::rounded_to_bf16(w);
  const std::byte* bias_data = b.defined() ? b.storage()->read_only_data() + b.offset() * dtype_size(b.dtype()) : nullptr;
  gemm::multiply(x.dtype(), 1, gemm::operand_of(x_saved), transposed(gemm::operand_of(w_read)), gemm::matrix_of(out),
                 {.bias = bias_data, .precision = precision});
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  out = out.as_strided(out_shape, contiguous_strides(out_shape), 0);
  // The differentiated backward (create_graph) reads x and the weight with their graph. Under autocast x's
  // storage may be freed, since only its bf16 rounding is saved: then x's place in the graph is kept (its node,
  // which the edge holds already) and backward reads the rounding there, the operand the forward multiplied.
  const bool keep_x = !in_bf16 || (x.is_leaf() && x.requires_grad());
  return record(out, Op::linear, {x, weight, bias},
                [x_saved, w_read, transposed, x_shape = x.shape(), rows, in_features, out_features,
                 x_graph = keep_x ? x : Tensor(), x_node = keep_x ? nullptr : x.grad_fn(),
                 weight](const Tensor& dout, InputGrads& g) {
                  if (grad_mode_enabled()) {
                    const Tensor x_read = x_graph.defined() ? x_graph : on_node(widened(x_saved, x_shape), x_node);
                    linear_backward_recorded(x_read, weight, dout, g);
                    return;
                  }
                  const DType dtype = dout.dtype();
                  // [rows, out]
                  const Tensor dy = gemm::with_dense_matrices(reshape(dout, {rows, out_features}));
                  const Tensor dx = g.needs(0) ? empty({rows, in_features}, dtype) : Tensor();
                  const Tensor dw = g.needs(1) ? empty({out_features, in_features}, dtype) : Tensor();
                  // Each product's precision, decided once from its operands as the forward read them (the engine
                  // runs this under the forward's autocast state).
                  auto precision_of = [&](const gemm::Matrix& a, const gemm::Matrix& b, const Tensor& c) {
                    return c.defined() ? autocast::product_precision(Op::linear, dtype, a, b, gemm::operand_of(c))
                                       : gemm::Precision::native;
                  };
                  const gemm::Precision dx_precision = precision_of(gemm::operand_of(dy), gemm::operand_of(w_read), dx);
                  const gemm::Precision dw_precision =
                      precision_of(transposed(gemm::operand_of(dy)), gemm::operand_of(x_saved), dw);
                  // Both products read dy: rounded once when both run in bf16.
                  const bool round_dy_once = dx_precision == gemm::Precision::bf16 && dw_precision == gemm::Precision::bf16;
                  const Tensor dy_read = round_dy_once ? gemm::rounded_to_bf16(dy) : dy;
                  if (dx.defined()) {  // dx = dy · W, W in the forward's operand (its bf16 rounding under autocast)
                    gemm::multiply(dtype, 1, gemm::operand_of(dy_read), gemm::operand_of(w_read), gemm::matrix_of(dx),
                                   {.precision = dx_precision});
                    g[0] = reshape(dx, x_shape);
                  }
                  if (dw.defined()) {  // dW = dyᵀ · x, one GEMM over all rows
                    gemm::multiply(dtype, 1, transposed(gemm::operand_of(dy_read)), gemm::operand_of(x_saved),
                                   gemm::matrix_of(dw), {.precision = dw_precision});
                    g[1] = dw;
                  }
                  if (g.needs(2)) g[2] = sum(dy, {0});  // db = Σ_rows dy
                });
}

}  // namespace gradformer
