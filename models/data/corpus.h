// Parallel corpora as plain strings: sentence pairs, train/valid/test splits, a TSV reader and writer, and the
// copy and reverse sanity tasks. Knows nothing of tensors, vocabularies or tokenisation; the synthetic German
// grammar task lives in grammar.h and the Ding dictionary extraction in ding.h.
#pragma once

#include "autograd/generator.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::data {

struct SentencePair {
  std::string source;
  std::string target;
  bool operator==(const SentencePair&) const = default;
};

struct Splits {
  std::vector<SentencePair> train, valid, test;
};

struct TsvOptions {
  bool skip_bad_lines = false;  // count and skip lines without exactly one TAB, or not UTF-8, instead of throwing
  size_t max_tokens = 0;        // if > 0, keep only the first max_tokens whitespace-separated tokens of each side
};

// What a read saw; the library reports, the caller decides whether to print.
struct TsvReport {
  size_t lines = 0;          // lines read, including skipped ones
  size_t skipped_bad = 0;    // lines without exactly one TAB, or not UTF-8 (only with skip_bad_lines)
  size_t skipped_empty = 0;  // empty or whitespace-only lines, and lines with an empty side
  size_t truncated = 0;      // pairs where at least one side was cut to max_tokens
};

// Parses "source<TAB>target" lines from any bytes; `name` is used in error messages ("corpus.tsv: line 7: ...").
// A trailing "\r" is dropped, so CRLF files read the same, and so is a UTF-8 byte-order mark at the start. Throws
// FormatError on a bad line (not one TAB, or not UTF-8: line and byte named) unless skipped.
std::vector<SentencePair> parse_tsv(std::string_view text, std::string_view name, const TsvOptions& options = {},
                                    TsvReport* report = nullptr);
std::vector<SentencePair> read_tsv_from_string(std::string_view text, const TsvOptions& options = {},
                                               TsvReport* report = nullptr);
// Throws IOError naming the path when the file cannot be read (or is a directory).
std::vector<SentencePair> read_tsv(const std::string& path, const TsvOptions& options = {},
                                   TsvReport* report = nullptr);
// Throws ValueError when a side contains a TAB or newline (it could not be read back), IOError on write failure.
void write_tsv(const std::string& path, const std::vector<SentencePair>& pairs);

// Annotated-Transformer sanity tasks: sentences of 3..10 symbols drawn from "1".."20", joined by spaces; the target
// is the source (copy) or the source reversed. Splits hold distinct sources, drawn from Generator(seed).
Splits make_copy_task(uint64_t seed = 1, size_t train_size = 20000, size_t valid_size = 500, size_t test_size = 500);
Splits make_reverse_task(uint64_t seed = 1, size_t train_size = 20000, size_t valid_size = 500,
                         size_t test_size = 500);

// Calls `draw` until train, valid and test hold the requested numbers of pairs with pairwise distinct sources (in
// that order of filling), so no source sentence appears in two splits. Throws ValueError naming `task` when a
// million draws in a row bring nothing new: the task cannot make that many distinct sentences.
Splits draw_distinct_splits(std::string_view task, const std::function<SentencePair()>& draw, size_t train_size,
                            size_t valid_size, size_t test_size);

// FNV-1a 64-bit: a stable hash for deterministic splits that do not depend on std::hash.
uint64_t fnv1a64(std::string_view text);

// Whitespace-separated tokens (space, TAB, CR, LF, FF, VT).
std::vector<std::string> split_whitespace(std::string_view text);

}  // namespace gradformer::data
