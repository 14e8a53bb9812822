// The basic layers: Linear, Embedding, LayerNorm, Dropout. Each registers its parameters under PyTorch's names
// (weight, bias) and initialises them as PyTorch does, drawing at construction from the Generator it is given
// (the thread's current one by default) and keeping none. Attention, Transformer and recurrent layers live in
// their own files and are built from these.
#pragma once

#include "nn/module.h"

namespace gradformer::nn {

// y = x·Wᵀ + b, W [out_features, in_features], b [out_features]; Kaiming-uniform W and uniform(±1/√in) b
// as torch.nn.Linear.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, Generator& gen = current_generator());
  std::string type_name() const override { return "Linear"; }
  Tensor forward(const Tensor& x) const;  // (..., in) -> (..., out)
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

// A lookup table [num_embeddings, embedding_dim] drawn from N(0, 1); the padding_idx row starts at zero and
// never receives a gradient, as torch.nn.Embedding.
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx = -1,
            Generator& gen = current_generator());
  std::string type_name() const override { return "Embedding"; }
  Tensor forward(const Tensor& ids) const;  // i64 (...) -> (..., embedding_dim)
  const Tensor& weight() const { return weight_; }
  int64_t padding_idx() const { return padding_idx_; }

 private:
  Tensor weight_;
  int64_t padding_idx_;
};

// Normalises over the last dimension(s) `normalized_shape` with a learned weight (ones) and bias (zeros).
class LayerNorm : public UnaryModule {
 public:
  explicit LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true);
  std::string type_name() const override { return "LayerNorm"; }
  Tensor forward(const Tensor& x) const override;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Shape normalized_shape_;
  double eps_;
  Tensor weight_, bias_;
};

// Zeroes elements with probability p in training (scaling the rest by 1/(1-p)); the identity in eval mode.
// Masks come from the calling thread's current generator (autograd/generator.h), as torch.nn.Dropout's come
// from torch's: reseed it, or put a GeneratorGuard around the forward, to drop the same elements again.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  std::string type_name() const override { return "Dropout"; }
  Tensor forward(const Tensor& x) const;
  double p() const { return p_; }

 private:
  double p_;
};

}  // namespace gradformer::nn
