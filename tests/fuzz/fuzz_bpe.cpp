// libFuzzer target for the BPE merges loader (models/data/tokenizer.cpp, Bpe::from_text). Any input must load
// into merges that write and read back unchanged and tokenise a sentence without throwing, or throw
// FormatError; anything else is a finding.
#include "autograd/error.h"
#include "models/data/tokenizer.h"

#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using gradformer::data::Bpe;
  Bpe bpe;
  try {
    bpe = Bpe::from_text(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const gradformer::FormatError&) {
    return 0;
  }
  if (Bpe::from_text(bpe.to_text(), "fuzz-rewritten").merges() != bpe.merges()) std::abort();
  bpe.detokenize(bpe.tokenize("the small dog sees the cat ."));
  return 0;
}
