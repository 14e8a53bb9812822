// Token-budget batching and padding (see batching.h). Sorting by length before filling keeps padding low;
// shuffling whole batches afterwards keeps training from seeing lengths in order.
#include "models/data/batching.h"

#include "autograd/error.h"

#include <algorithm>
#include <numeric>
#include <tuple>

namespace gradformer::data {

std::vector<Batch> make_batches(const std::vector<size_t>& source_lengths, const std::vector<size_t>& target_lengths,
                                size_t max_tokens, Generator& gen, bool shuffle) {
  if (source_lengths.size() != target_lengths.size()) {
    fail<ValueError>("make_batches", "{} source lengths but {} target lengths", source_lengths.size(),
                     target_lengths.size());
  }
  if (max_tokens == 0) fail<ValueError>("make_batches", "max_tokens must be positive");
  const size_t n = source_lengths.size();
  std::vector<uint64_t> tie_break(n);
  for (size_t i = 0; i < n; ++i) tie_break[i] = shuffle ? gen.next_u64() : i;
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return std::tie(target_lengths[a], source_lengths[a], tie_break[a], a) <
           std::tie(target_lengths[b], source_lengths[b], tie_break[b], b);
  });

  std::vector<Batch> batches;
  Batch current;
  size_t longest = 0;
  for (const size_t i : order) {
    const size_t with_this = std::max({longest, source_lengths[i], target_lengths[i]});
    if (!current.indices.empty() && (current.indices.size() + 1) * with_this > max_tokens) {
      batches.push_back(std::move(current));
      current = Batch{};
      longest = 0;
    }
    current.indices.push_back(i);
    longest = std::max({longest, source_lengths[i], target_lengths[i]});
  }
  if (!current.indices.empty()) batches.push_back(std::move(current));

  if (shuffle) {
    for (size_t i = batches.size(); i > 1; --i) std::swap(batches[i - 1], batches[gen.below(i)]);
  }
  return batches;
}

std::vector<int64_t> pad_batch(const std::vector<std::vector<int64_t>>& seqs, int64_t pad_id, size_t& max_len) {
  max_len = 0;
  for (const auto& seq : seqs) max_len = std::max(max_len, seq.size());
  std::vector<int64_t> block(seqs.size() * max_len, pad_id);  // (B, max_len)
  for (size_t row = 0; row < seqs.size(); ++row) {
    std::copy(seqs[row].begin(), seqs[row].end(), block.begin() + static_cast<std::ptrdiff_t>(row * max_len));
  }
  return block;
}

}  // namespace gradformer::data
