// The one dropout mask, shared by the dropout op (ops/normalization.cpp) and the dropout on attention weights
// (ops/attention.cpp). Element j is dropped when bits [16·(j mod 4), 16·(j mod 4) + 16) of word j / 4 are below
// round(p · 65536), so p is realised to within 1/65536. Word c is splitmix64_output(key + (c + 1) · gamma)
// (autograd/generator.h): a counter-based generator, as Philox is for PyTorch's CUDA dropout, whose key is the one
// word a dropout call draws from the generator. Why a counter rather than one generator word per four elements:
// - the generator advances by one word per call whatever the tensor's size, so the stream after a dropout does not
//   depend on the shapes that went through it, and a checkpointed generator state resumes bit for bit;
// - each word is computed on its own, so the loop vectorises (AVX-512 has the 64-bit multiplies) and is cut across
//   OpenMP threads, and the mask is the same for every thread count and machine;
// - backward recomputes the mask from (p, key), sixteen bytes, instead of keeping a tensor the size of the input.
// Not an op: no graph, no checks.
#pragma once

#include "autograd/generator.h"
#include "autograd/strided.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace gradformer::kernels {

struct DropoutMask {
  double p = 0.0;
  uint64_t key = 0;

  // A mask for one dropout call: draws its key, one word, from gen.
  static DropoutMask draw(double p, Generator& gen) { return {p, gen.next_u64()}; }

  // out[j] = in[j] · scale_j for j < count, scale_j being 0 for a dropped element and 1 / (1 - p) for a kept one
  // (0 for all when p == 1), so a NaN input stays NaN as in PyTorch. in and out must not overlap.
  template <class T>
  void apply(const T* in, T* out, int64_t count) const {
    // p == 1 makes the threshold 65536, above every chunk: nothing survives.
    const auto threshold = static_cast<uint32_t>(std::lround(p * 65536.0));
    const T keep_scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
    const int64_t whole_words = count / 4;
    // A chunk holds kParallelGrain / 2 elements, as strided.h cuts a long run.
    constexpr int64_t words_per_chunk = kParallelGrain / 8;
    const int64_t chunks = (whole_words + words_per_chunk - 1) / words_per_chunk;
#pragma omp parallel for schedule(static) if (count >= kParallelGrain)
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      const int64_t end = std::min(whole_words, (chunk + 1) * words_per_chunk);
#pragma omp simd
      for (int64_t c = chunk * words_per_chunk; c < end; ++c) {
        const uint64_t bits = word(c);
        for (int64_t k = 0; k < 4; ++k) out[4 * c + k] = in[4 * c + k] * scale(bits, k, threshold, keep_scale);
      }
    }
    const uint64_t last_bits = word(whole_words);
    for (int64_t j = 4 * whole_words; j < count; ++j) out[j] = in[j] * scale(last_bits, j % 4, threshold, keep_scale);
  }

 private:
  uint64_t word(int64_t c) const { return splitmix64_output(key + static_cast<uint64_t>(c + 1) * kSplitmix64Gamma); }

  template <class T>
  static T scale(uint64_t bits, int64_t k, uint32_t threshold, T keep_scale) {
    const auto chunk = static_cast<uint32_t>(bits >> (16 * k)) & 0xFFFFu;
    return chunk >= threshold ? keep_scale : T(0);
  }
};

}  // namespace gradformer::kernels
