// libFuzzer target for the parallel-corpus reader (models/data/corpus.cpp, parse_tsv), strict and skipping bad
// lines. Any input must parse or throw FormatError (strict mode only); anything else is a finding.
#include "autograd/error.h"
#include "models/data/corpus.h"

#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace d = gradformer::data;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    d::parse_tsv(text, "fuzz.tsv");
  } catch (const gradformer::FormatError&) {
  }
  d::TsvOptions lenient;
  lenient.skip_bad_lines = true;
  lenient.max_tokens = 8;
  for (const d::SentencePair& pair : d::parse_tsv(text, "fuzz.tsv", lenient))
    if (pair.source.find('\t') != std::string::npos) std::abort();
  return 0;
}
