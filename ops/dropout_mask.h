// The one dropout mask, shared by the dropout op (ops/normalization.cpp) and the dropout on attention weights
// (ops/attention.cpp): one 64-bit draw per four elements, element j keeping bits [16·(j mod 4), 16·(j mod 4) + 16)
// of word j / 4 and being dropped when that chunk is below round(p · 65536). So p is realised to within
// 1/65536, the mask depends only on the generator's state and the element count (the same on every machine and
// thread count), and replaying a saved state gives the same mask again. Not an op: no graph, no checks.
#pragma once

#include "autograd/generator.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace gradformer::kernels {

// Calls use(j, scale_j) for j = 0..count-1 in order, scale_j being 0 for a dropped element and 1 / (1 - p) for
// a kept one (0 for all when p == 1). Draws (count + 3) / 4 words from gen, all before the first call.
template <class T, class Use>
void for_each_dropout_scale(int64_t count, double p, Generator& gen, Use use) {
  std::vector<uint64_t> words(static_cast<size_t>((count + 3) / 4));
  for (uint64_t& word : words) word = gen.next_u64();
  // p == 1 makes the threshold 65536, above every chunk: nothing survives.
  const auto threshold = static_cast<uint32_t>(std::lround(p * 65536.0));
  const T keep_scale = p < 1.0 ? static_cast<T>(1.0 / (1.0 - p)) : T(0);
  const uint64_t* w = words.data();
  for (int64_t j = 0; j < count; ++j) {
    const auto chunk = static_cast<uint32_t>((w[j >> 2] >> ((j & 3) * 16)) & 0xFFFFu);
    use(j, chunk >= threshold ? keep_scale : T(0));
  }
}

}  // namespace gradformer::kernels
