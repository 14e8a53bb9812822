// libFuzzer target for the in-memory safetensors parser (nn/safetensors.cpp). Built by hand or by the
// sanitizer/fuzz build, not by the default meson build; seeds live in tests/fuzz/corpus/safetensors/ and are
// written by make_safetensors_corpus.cpp. Any input must either parse into a file that serializes and parses
// back to itself, or throw FormatError; any other exception, crash, leak or hang is a finding.
// libFuzzer adds new inputs to the first corpus directory it is given: point it at a scratch copy of the seeds
// unless the finds are meant to be committed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "autograd/error.h"
#include "nn/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace st = gradformer::safetensors;
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  st::File file;
  try {
    file = st::parse(bytes, "fuzz");
  } catch (const gradformer::FormatError&) {
    return 0;
  }
  // An accepted file must survive a round trip unchanged; abort() makes a mismatch a reported crash.
  if (st::parse(st::serialize(file), "fuzz-rewritten") != file) std::abort();
  return 0;
}
