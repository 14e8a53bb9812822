// The oneDNN backend of the GEMM: f32 products past the small ones, and under autocast bf16 operands with f32
// accumulation. Creating a matmul primitive costs far more than a small product, so each is created once per
// shape (sizes, strides, bias, alpha, precision) and kept in a process-wide cache. Not the choice of backend
// (gemm.cpp) nor the rounding of operands (gemm_bf16.cpp).
#include "ops/gemm_backends.h"

#include "ops/onednn.h"

#include <bit>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace gradformer::gemm {
namespace {

// The oneDNN primitives made so far, by everything that shapes one (sizes, strides, bias, alpha, precision).
struct PrimitiveCache {
  std::mutex mutex;
  std::map<std::vector<int64_t>, dnnl::matmul> primitives;
};

PrimitiveCache& primitive_cache() {
  static PrimitiveCache cache;
  return cache;
}

// A matrix oneDNN sees as a [batch, rows, cols] tensor; a repeated matrix is a batch of 1, which it broadcasts.
dnnl::memory::desc describe(const Matrix& m, int64_t batch,
                            dnnl::memory::data_type type = dnnl::memory::data_type::f32) {
  const int64_t b = m.batch_stride == 0 ? 1 : batch;
  return dnnl::memory::desc({b, m.rows, m.cols}, type,
                            {m.batch_stride == 0 ? m.rows * m.cols : m.batch_stride, m.row_stride, m.col_stride});
}

}  // namespace

void multiply_onednn(int64_t batch, const Matrix& given_a, const Matrix& given_b, const Matrix& c, float alpha,
                     const std::byte* bias, Precision precision) {
  const bool bf16_operands = precision == Precision::bf16;
  // Tensors rather than std::vector: a vector zero-fills what the copy then overwrites (a memset pass as long
  // as the rounding itself in perf's profile of small).
  Tensor a_buffer, b_buffer;
  auto operand = [&](const Matrix& given, Tensor& buffer) {
    if (!bf16_operands || given.bf16) return given;
    buffer = empty({static_cast<int64_t>(elements_stored(given, batch))}, DType::bf16);
    return rounded_operand(given, batch, buffer.data_ptr<bfloat16>());
  };
  const Matrix a = operand(given_a, a_buffer), b = operand(given_b, b_buffer);
  const auto operand_type = bf16_operands ? dnnl::memory::data_type::bf16 : dnnl::memory::data_type::f32;
  PrimitiveCache& cache = primitive_cache();
  const std::vector<int64_t> key{batch,        a.rows,       a.cols,         b.cols,       a.row_stride,
                                 a.col_stride, a.batch_stride, b.row_stride, b.col_stride, b.batch_stride,
                                 c.row_stride, c.col_stride,   c.batch_stride, bias != nullptr,
                                 static_cast<int64_t>(std::bit_cast<uint32_t>(alpha)), bf16_operands};
  const dnnl::memory::desc a_md = describe(a, batch, operand_type), b_md = describe(b, batch, operand_type),
                           c_md = describe(c, batch);
  const dnnl::memory::desc bias_md({1, 1, c.cols}, dnnl::memory::data_type::f32, dnnl::memory::format_tag::abc);
  // oneDNN's output scale multiplies the bias too (dst = alpha · (a·b + bias)), so a scaled product adds its
  // bias afterwards as a binary post-op instead; an unscaled one (linear's) takes it as the bias argument.
  const bool bias_after_scale = bias && alpha != 1.0f;
  dnnl::matmul primitive;
  {
    std::lock_guard lock(cache.mutex);
    auto it = cache.primitives.find(key);
    if (it == cache.primitives.end()) {
      dnnl::primitive_attr attr;
      if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
      if (bias_after_scale) {
        dnnl::post_ops ops;
        ops.append_binary(dnnl::algorithm::binary_add, bias_md);
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::desc desc = bias && !bias_after_scale ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md)
                                                                : dnnl::matmul::desc(a_md, b_md, c_md);
      dnnl::matmul::primitive_desc primitive_desc;
      try {
        primitive_desc = dnnl::matmul::primitive_desc(desc, attr, onednn::engine());
      } catch (const dnnl::error& error) {
        fail<ValueError>("gemm", "oneDNN has no {} matmul for [{}, {}] x [{}, {}] on this CPU ({})",
                         bf16_operands ? "bf16" : "f32", a.rows, a.cols, b.rows, b.cols, error.what());
      }
      it = cache.primitives.emplace(key, dnnl::matmul(primitive_desc)).first;
    }
    primitive = it->second;
  }
  const dnnl::engine& engine = onednn::engine();
  std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, dnnl::memory(a_md, engine, a.data)},
                                             {DNNL_ARG_WEIGHTS, dnnl::memory(b_md, engine, b.data)},
                                             {DNNL_ARG_DST, dnnl::memory(c_md, engine, c.data)}};
  if (bias)
    args.emplace(bias_after_scale ? DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1 : DNNL_ARG_BIAS,
                 dnnl::memory(bias_md, engine, const_cast<std::byte*>(bias)));
  dnnl::stream& stream = onednn::stream();
  primitive.execute(stream, args);
  stream.wait();
}

}  // namespace gradformer::gemm
