// Length-bucketed batching by a token budget, and padding of id sequences into one row-major block. Works on
// lengths and ids only: which side is which, and what the ids mean, is the caller's business. Not a data
// loader: no threads, no prefetching.
#pragma once

#include "autograd/generator.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gradformer::data {

struct Batch {
  std::vector<size_t> indices;  // positions in the corpus, shortest targets first
};

// Sorts examples by (target length, source length), ties broken by a random key from `gen` when shuffling and by
// index otherwise, then fills batches greedily so that batch size x max(longest source, longest target)
// <= max_tokens: the padded size of the larger of the two blocks. An example that alone exceeds the budget
// gets a batch of its own. With `shuffle`, the order of the batches is then shuffled with `gen`.
// Deterministic for a given generator state. Throws ValueError when the length lists differ in size or
// max_tokens is 0.
std::vector<Batch> make_batches(const std::vector<size_t>& source_lengths, const std::vector<size_t>& target_lengths,
                                size_t max_tokens, Generator& gen, bool shuffle);

// The sequences as a row-major [B, max_len] block filled with pad_id past each sequence's end; max_len is set to
// the longest sequence (0 for an empty batch).
std::vector<int64_t> pad_batch(const std::vector<std::vector<int64_t>>& seqs, int64_t pad_id, size_t& max_len);

}  // namespace gradformer::data
