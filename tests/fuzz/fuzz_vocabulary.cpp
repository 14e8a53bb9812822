// libFuzzer target for the vocabulary loader (models/data/tokenizer.cpp, Vocabulary::from_text). Any input must
// load into a vocabulary that writes and reads back to itself, or throw FormatError; anything else is a finding.
#include "autograd/error.h"
#include "models/data/tokenizer.h"

#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using gradformer::data::Vocabulary;
  Vocabulary vocabulary;
  try {
    vocabulary = Vocabulary::from_text(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const gradformer::FormatError&) {
    return 0;
  }
  if (!(Vocabulary::from_text(vocabulary.to_text(), "fuzz-rewritten") == vocabulary)) std::abort();
  return 0;
}
