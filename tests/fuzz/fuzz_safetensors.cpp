// libFuzzer target for the in-memory safetensors parser (nn/safetensors.cpp). Built by hand or by the
// sanitizer/fuzz build, not by the default meson build; seeds live in tests/fuzz/corpus/safetensors/ and are
// written by make_safetensors_corpus.cpp. Any input must either parse into a file that serializes and parses
// back to itself and whose every record converts to its kind's element type (floating ones to f64 and to BF16,
// integer and BOOL ones to i64, BOOL holding only 0 and 1), or throw FormatError; any other exception, crash,
// leak or hang is a finding.
// libFuzzer adds new inputs to the first corpus directory it is given: point it at a scratch copy of the seeds
// unless the finds are meant to be committed.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

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
  for (const auto& [name, record] : file.tensors) {
    const auto count = static_cast<std::size_t>(st::numel(record.shape));
    if (st::is_floating(record.dtype)) {
      if (st::values_as<double>(record, name).size() != count) std::abort();
      const st::TensorRecord as_f32 = st::make_record<float>(record.shape, st::values_as<float>(record, name));
      if (st::to_bfloat16(as_f32, name).data.size() != 2 * count) std::abort();
    } else {
      const std::vector<int64_t> values = st::values_as<int64_t>(record, name);
      if (values.size() != count) std::abort();
      if (record.dtype == st::DType::BOOL &&
          std::any_of(values.begin(), values.end(), [](int64_t v) { return v != 0 && v != 1; }))
        std::abort();
    }
  }
  return 0;
}
