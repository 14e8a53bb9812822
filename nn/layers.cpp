#include "nn/layers.h"

#include "nn/init.h"
#include "ops/ops.h"

#include <cmath>

namespace gradformer::nn {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen) {
  if (in_features <= 0 || out_features <= 0)
    fail<ValueError>("Linear", "in_features {} and out_features {} must be positive", in_features, out_features);
  weight_ = register_parameter("weight", init::kaiming_uniform_(empty({out_features, in_features}), std::sqrt(5.0),
                                                                init::FanMode::fan_in, gen));
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    bias_ = register_parameter("bias", init::uniform_(empty({out_features}), -bound, bound, gen));
  }
}

Tensor Linear::forward(const Tensor& x) const {
  return with_forward_hooks([this](const Tensor& input) { return linear(input, weight_, bias_); }, x);
}

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx, Generator& gen)
    : padding_idx_(padding_idx) {
  if (num_embeddings <= 0 || embedding_dim <= 0)
    fail<ValueError>("Embedding", "num_embeddings {} and embedding_dim {} must be positive", num_embeddings,
                     embedding_dim);
  if (padding_idx < -1 || padding_idx >= num_embeddings)
    fail<ValueError>("Embedding", "padding_idx {} is out of range for {} embeddings", padding_idx, num_embeddings);
  Tensor table = init::normal_(empty({num_embeddings, embedding_dim}), 0.0, 1.0, gen);
  if (padding_idx >= 0)
    for (int64_t j = 0; j < embedding_dim; ++j) table.set_at({padding_idx, j}, 0.0);
  weight_ = register_parameter("weight", table);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return with_forward_hooks([this](const Tensor& input) { return embedding(weight_, input, padding_idx_); }, ids);
}

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine)
    : normalized_shape_(std::move(normalized_shape)), eps_(eps) {
  if (normalized_shape_.empty() || numel_of(normalized_shape_) == 0)
    fail<ValueError>("LayerNorm", "normalized_shape {} must be non-empty", shape_str(normalized_shape_));
  if (elementwise_affine) {
    weight_ = register_parameter("weight", ones(normalized_shape_));
    bias_ = register_parameter("bias", zeros(normalized_shape_));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const {
  return with_forward_hooks(
      [this](const Tensor& input) { return layer_norm(input, normalized_shape_, weight_, bias_, eps_); }, x);
}

Dropout::Dropout(double p) : p_(p) {
  if (!(p >= 0.0 && p <= 1.0)) fail<ValueError>("Dropout", "p = {} is outside [0, 1]", p);
}

Tensor Dropout::forward(const Tensor& x) const {
  return with_forward_hooks([this](const Tensor& input) { return dropout(input, p_, is_training()); }, x);
}

}  // namespace gradformer::nn
