// Reading, validating and writing safetensors files (see safetensors.h). Not the Tensor adapter.
//
// What parse() rejects, each with its own message naming the file and, where there is one, the tensor:
//   - fewer than 8 bytes; a header size beyond the bytes that follow it or beyond max_header_size (both checked
//     on the size field alone, before anything is allocated);
//   - a header that is not JSON (including ill-formed UTF-8, which the JSON lexer rejects), nests deeper than
//     any header can, repeats a key within one object, or is not an object;
//   - "__metadata__" that is not an object whose values are all strings;
//   - an entry that is not an object, lacks or adds keys beside dtype/shape/data_offsets, names an unknown or
//     unsupported dtype, has a shape that is not an array of non-negative integers or whose element count
//     overflows int64_t, or data_offsets that are not two non-negative integers with begin <= end;
//   - a byte range ending past the data buffer, or whose length is not numel * element size;
//   - byte ranges that overlap, or that leave bytes of the data buffer uncovered (the reference implementation
//     requires the ranges to tile the buffer exactly: "MetadataIncompleteBuffer");
//   - a BOOL element that is not byte 0 or 1 (numpy and PyTorch only write those; another byte has no meaning
//     every reader agrees on).
// Unlike the reference we reject duplicate keys (serde and nlohmann would silently keep one of them) and keys
// beside the three an entry has (serde ignores them): a checkpoint we cannot read unambiguously is an error.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "autograd/error.h"
#include "nn/output_file.h"

namespace gradformer::safetensors {

namespace {

using nlohmann::json;

constexpr std::size_t size_field_bytes = 8;

// A header is at most root object > entry object > shape array; anything deeper is rejected while parsing,
// so a hostile "[[[[..." cannot build a deep DOM. The slack above 3 keeps the messages about mildly wrong
// entries (a nested shape, an object as a metadata value) specific.
constexpr int max_header_depth = 8;

constexpr std::array<DType, 10> all_dtypes = {DType::BOOL, DType::U8,  DType::I8,  DType::I16, DType::F16,
                                              DType::BF16, DType::I32, DType::F32, DType::F64, DType::I64};

// The other dtypes the reference implementation defines (its Dtype enum, including the 4-, 6- and 8-bit float
// formats it added later), so that a file we cannot use gets "not supported" rather than "not a dtype".
constexpr std::array<std::string_view, 10> known_unsupported_dtypes = {
    "F4", "F6_E2M3", "F6_E3M2", "F8_E5M2", "F8_E4M3", "F8_E8M0", "U16", "U32", "C64", "U64"};

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

std::string shape_text(std::span<const int64_t> shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

// numel as uint64_t, or false when some partial product overflows int64_t. Partial products are checked even
// when a later dimension is 0, as the reference does: such a shape is corrupt, and code computing strides
// from it would overflow too.
bool checked_numel(std::span<const int64_t> shape, uint64_t& count) {
  uint64_t product = 1;
  for (const int64_t dim : shape) {
    if (__builtin_mul_overflow(product, static_cast<uint64_t>(dim), &product) ||
        product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return false;
    }
  }
  count = product;
  return true;
}

// The header size from the 8-byte prefix, checked against the whole file's size and the cap. Shared by parse
// and load, which runs it before reading (and allocating for) the rest of the file.
uint64_t checked_header_size(std::span<const std::byte> prefix, uint64_t file_size, std::string_view name) {
  if (file_size < size_field_bytes) {
    fail<FormatError>(name, "file is {} bytes, shorter than the 8-byte header size field", file_size);
  }
  uint64_t header_size = 0;
  for (std::size_t i = 0; i < size_field_bytes; ++i) {
    header_size |= static_cast<uint64_t>(std::to_integer<uint8_t>(prefix[i])) << (8 * i);
  }
  if (header_size > file_size - size_field_bytes) {
    fail<FormatError>(name, "header size {} exceeds the {} bytes that follow the size field", header_size,
                      file_size - size_field_bytes);
  }
  if (header_size > max_header_size) {
    fail<FormatError>(name, "header size {} exceeds the limit of {} bytes", header_size, max_header_size);
  }
  return header_size;
}

// Parses the header text, rejecting duplicate keys and deep nesting through the parser callback (nlohmann keeps
// the last of duplicate keys without a word). The callback records the first problem and from then on
// discards everything; nothing is discarded before that, so every object_end event arrives and the stack of
// open objects stays in step.
json parse_header_json(std::string_view text, std::string_view name) {
  std::vector<std::set<std::string>> open_objects;
  int depth = 0;
  std::string problem;
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    if (!problem.empty()) return false;
    if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) {
      if (++depth > max_header_depth) {
        problem = fmt::format("header nests deeper than {} levels; a safetensors header needs 3", max_header_depth);
        return false;
      }
      if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end || event == json::parse_event_t::array_end) {
      if (event == json::parse_event_t::object_end) open_objects.pop_back();
      --depth;
    } else if (event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        problem = fmt::format("header has the key \"{}\" twice in one object", key);
        return false;
      }
    }
    return true;
  };
  json header;
  try {
    header = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& error) {
    fail<FormatError>(name, "header is not valid JSON: {}", error.what());
  }
  if (!problem.empty()) fail<FormatError>(name, "{}", problem);
  return header;
}

DType parse_dtype(const json& value, std::string_view name, const std::string& tensor) {
  if (!value.is_string()) {
    fail<FormatError>(name, "tensor '{}': dtype is a JSON {}, not a string", tensor, value.type_name());
  }
  const auto& text = value.get_ref<const std::string&>();
  for (const DType dtype : all_dtypes) {
    if (text == dtype_name(dtype)) return dtype;
  }
  if (std::find(known_unsupported_dtypes.begin(), known_unsupported_dtypes.end(), text) !=
      known_unsupported_dtypes.end()) {
    std::vector<std::string_view> readable;
    for (const DType dtype : all_dtypes) readable.push_back(dtype_name(dtype));
    fail<FormatError>(name, "tensor '{}': dtype {} is not supported ({} are)", tensor, text, fmt::join(readable, ", "));
  }
  fail<FormatError>(name, "tensor '{}': dtype \"{}\" is not a safetensors dtype", tensor, text);
}

std::vector<int64_t> parse_shape(const json& value, std::string_view name, const std::string& tensor) {
  if (!value.is_array()) {
    fail<FormatError>(name, "tensor '{}': shape is a JSON {}, not an array", tensor, value.type_name());
  }
  std::vector<int64_t> shape;
  shape.reserve(value.size());
  for (const json& dim : value) {
    if (!dim.is_number_unsigned()) {
      fail<FormatError>(name, "tensor '{}': shape {} holds {}, not a non-negative integer", tensor, value.dump(),
                        dim.dump());
    }
    const auto size = dim.get<uint64_t>();
    if (size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      fail<FormatError>(name, "tensor '{}': shape {} has a dimension beyond int64", tensor, value.dump());
    }
    shape.push_back(static_cast<int64_t>(size));
  }
  return shape;
}

// A validated header entry: where its bytes lie in the data buffer.
struct Entry {
  const std::string* tensor;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin;
  uint64_t end;
};

Entry parse_entry(const std::string& tensor, const json& value, uint64_t data_size, std::string_view name) {
  if (!value.is_object()) {
    fail<FormatError>(name, "tensor '{}': entry is a JSON {}, not an object", tensor, value.type_name());
  }
  for (const auto& item : value.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      fail<FormatError>(name, "tensor '{}': unexpected key \"{}\" (an entry has dtype, shape, data_offsets)",
                        tensor, item.key());
    }
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) fail<FormatError>(name, "tensor '{}': missing \"{}\"", tensor, key);
  }
  Entry entry{&tensor, parse_dtype(value["dtype"], name, tensor), parse_shape(value["shape"], name, tensor), 0, 0};

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    fail<FormatError>(name, "tensor '{}': data_offsets {} is not two non-negative integers [begin, end]", tensor,
                      offsets.dump());
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    fail<FormatError>(name, "tensor '{}': data_offsets [{}, {}] begin after they end", tensor, entry.begin,
                      entry.end);
  }
  if (entry.end > data_size) {
    fail<FormatError>(name, "tensor '{}': data_offsets [{}, {}] end past the {}-byte data buffer", tensor,
                      entry.begin, entry.end, data_size);
  }
  uint64_t count = 0;
  uint64_t bytes = 0;
  if (!checked_numel(entry.shape, count) || __builtin_mul_overflow(count, dtype_size(entry.dtype), &bytes)) {
    fail<FormatError>(name, "tensor '{}': shape {} has more elements than 64 bits can count", tensor,
                      shape_text(entry.shape));
  }
  if (entry.end - entry.begin != bytes) {
    fail<FormatError>(name, "tensor '{}': data_offsets [{}, {}] span {} bytes, but shape {} of {} needs {}", tensor,
                      entry.begin, entry.end, entry.end - entry.begin, shape_text(entry.shape),
                      dtype_name(entry.dtype), bytes);
  }
  return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, std::string_view name) {
  if (!value.is_object()) fail<FormatError>(name, "__metadata__ is a JSON {}, not an object", value.type_name());
  std::map<std::string, std::string> metadata;
  for (const auto& item : value.items()) {
    if (!item.value().is_string()) {
      fail<FormatError>(name, "__metadata__ value of \"{}\" is a JSON {}, not a string", item.key(),
                        item.value().type_name());
    }
    metadata.emplace(item.key(), item.value().get<std::string>());
  }
  return metadata;
}

// The byte ranges, sorted, must tile [0, data_size) exactly: each begins where the previous one ended.
void check_coverage(std::vector<Entry>& entries, uint64_t data_size, std::string_view name) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end, *a.tensor) < std::tie(b.begin, b.end, *b.tensor);
  });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  for (const Entry& entry : entries) {
    if (entry.begin < covered) {
      fail<FormatError>(name, "tensor '{}': data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", *entry.tensor,
                        entry.begin, entry.end, *previous->tensor, previous->begin, previous->end);
    }
    if (entry.begin > covered) {
      fail<FormatError>(name, "data buffer bytes [{}, {}) belong to no tensor", covered, entry.begin);
    }
    covered = entry.end;
    previous = &entry;
  }
  if (covered != data_size) {
    fail<FormatError>(name, "data buffer bytes [{}, {}) belong to no tensor", covered, data_size);
  }
}

// The index of the first byte of a BOOL record that is neither 0 nor 1; nothing for other dtypes.
std::optional<std::size_t> first_bad_bool(const TensorRecord& record) {
  if (record.dtype != DType::BOOL) return std::nullopt;
  const auto bad = std::find_if(record.data.begin(), record.data.end(), [](std::byte b) { return b > std::byte{1}; });
  if (bad == record.data.end()) return std::nullopt;
  return static_cast<std::size_t>(bad - record.data.begin());
}

// The header JSON (padded) and the order in which tensors' bytes follow it.
struct Layout {
  std::string header;
  std::vector<const std::pair<const std::string, TensorRecord>*> order;
};

// numel of a shape that came from our caller rather than from a file: a bad one is a ValueError.
uint64_t caller_numel(std::span<const int64_t> shape, std::string_view where) {
  for (const int64_t dim : shape) {
    if (dim < 0) fail<ValueError>(where, "shape {} has a negative dimension", shape_text(shape));
  }
  uint64_t count = 0;
  if (!checked_numel(shape, count)) {
    fail<ValueError>(where, "shape {} has more elements than int64 can count", shape_text(shape));
  }
  return count;
}

uint64_t record_bytes(DType dtype, std::span<const int64_t> shape, std::string_view where) {
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(caller_numel(shape, where), dtype_size(dtype), &bytes)) {
    fail<ValueError>(where, "shape {} of {} has more bytes than 64 bits can count", shape_text(shape),
                     dtype_name(dtype));
  }
  return bytes;
}

void check_record(const std::string& tensor, const TensorRecord& record) {
  const std::string where = fmt::format("safetensors: tensor '{}'", tensor);
  if (tensor == "__metadata__") fail<ValueError>(where, "that name is the format's reserved key");
  const uint64_t expected = record_bytes(record.dtype, record.shape, where);
  if (record.data.size() != expected) {
    fail<ValueError>(where, "shape {} of {} needs {} bytes, the record holds {}", shape_text(record.shape),
                     dtype_name(record.dtype), expected, record.data.size());
  }
  if (const auto bad = first_bad_bool(record)) {
    fail<ValueError>(where, "BOOL element {} is byte {:#04x}, not 0 or 1", *bad,
                     std::to_integer<unsigned>(record.data[*bad]));
  }
}

Layout plan(const File& file) {
  Layout layout;
  for (const auto& item : file.tensors) {
    check_record(item.first, item.second);
    layout.order.push_back(&item);
  }
  // The reference writer orders tensors by its dtype enum, descending, then by name; that enum lists dtypes
  // by increasing alignment, and ours keeps its relative order. Largest elements first keeps
  // every tensor aligned to its element size once the buffer is 8-aligned, and matching the order makes our
  // files byte-identical to the reference's for the same tensors. Stable: the map already sorted by name.
  std::stable_sort(layout.order.begin(), layout.order.end(),
                   [](const auto* a, const auto* b) { return a->second.dtype > b->second.dtype; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) header["__metadata__"] = file.metadata;
  uint64_t offset = 0;
  for (const auto* item : layout.order) {
    const TensorRecord& record = item->second;
    const uint64_t end = offset + record.data.size();
    header[item->first] = {{"dtype", dtype_name(record.dtype)},
                           {"shape", record.shape},
                           {"data_offsets", {offset, end}}};
    offset = end;
  }
  try {
    layout.header = header.dump(-1, ' ', /*ensure_ascii=*/false, nlohmann::ordered_json::error_handler_t::strict);
  } catch (const nlohmann::ordered_json::exception& error) {
    fail<ValueError>("safetensors", "a tensor name or metadata string is not valid UTF-8: {}", error.what());
  }
  layout.header.append((size_field_bytes - layout.header.size() % size_field_bytes) % size_field_bytes, ' ');
  // Writing a file that parse (and the reference) would refuse is worse than refusing to write it.
  if (layout.header.size() > max_header_size) {
    fail<ValueError>("safetensors", "header of {} bytes exceeds the limit of {} bytes readers accept",
                     layout.header.size(), max_header_size);
  }
  return layout;
}

std::array<std::byte, size_field_bytes> size_field(uint64_t header_size) {
  std::array<std::byte, size_field_bytes> field{};
  for (std::size_t i = 0; i < size_field_bytes; ++i) field[i] = static_cast<std::byte>(header_size >> (8 * i));
  return field;
}

// Closes a descriptor on scope exit.
struct Descriptor {
  int fd = -1;
  explicit Descriptor(int descriptor) : fd(descriptor) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  Descriptor(Descriptor&& other) noexcept : fd(std::exchange(other.fd, -1)) {}
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

void read_exactly(int fd, std::byte* out, std::size_t count, const std::string& path) {
  while (count > 0) {
    const ssize_t got = ::read(fd, out, count);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail<IOError>(path, "read failed: {}", errno_text(errno));
    if (got == 0) fail<IOError>(path, "file ended {} bytes early (was it truncated while being read?)", count);
    out += got;
    count -= static_cast<std::size_t>(got);
  }
}

}  // namespace

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::BOOL: return "BOOL";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
    case DType::I16: return "I16";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
  }
  fail<ValueError>("safetensors", "invalid DType value {}", static_cast<int>(dtype));
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::BOOL:
    case DType::U8:
    case DType::I8: return 1;
    case DType::I16:
    case DType::F16:
    case DType::BF16: return 2;
    case DType::I32:
    case DType::F32: return 4;
    case DType::F64:
    case DType::I64: return 8;
  }
  fail<ValueError>("safetensors", "invalid DType value {}", static_cast<int>(dtype));
}

bool is_floating(DType dtype) {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

float float_from_bfloat16(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

uint16_t bfloat16_from_float(float value) {
  if (std::isnan(value)) return 0x7FC0;
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  // Adding 0x7FFF rounds up what lies above the halfway point; the kept half's lowest bit breaks the tie toward
  // even. A carry into the exponent is the right answer too, up to infinity for values past bfloat16's largest.
  const uint32_t rounding_bias = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

float float_from_float16(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1F;
  const uint32_t mantissa = bits & 0x3FF;
  if (exponent == 0x1F) return std::bit_cast<float>(sign | 0x7F800000 | (mantissa << 13));
  if (exponent == 0) {  // zero or subnormal: mantissa · 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  // Rebias the exponent from 15 to 127 and widen the mantissa from 10 to 23 bits.
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

int64_t numel(std::span<const int64_t> shape) {
  return static_cast<int64_t>(caller_numel(shape, "safetensors"));
}

File parse(std::span<const std::byte> bytes, std::string_view name) {
  const uint64_t header_size =
      checked_header_size(bytes.first(std::min(bytes.size(), size_field_bytes)), bytes.size(), name);
  const std::span<const std::byte> header_bytes = bytes.subspan(size_field_bytes, header_size);
  const std::span<const std::byte> data = bytes.subspan(size_field_bytes + header_size);

  const json header = parse_header_json(
      std::string_view(reinterpret_cast<const char*>(header_bytes.data()), header_bytes.size()), name);
  if (!header.is_object()) fail<FormatError>(name, "header is a JSON {}, not an object", header.type_name());

  File file;
  std::vector<Entry> entries;
  for (const auto& item : header.items()) {
    if (item.key() == "__metadata__") {
      file.metadata = parse_metadata(item.value(), name);
    } else {
      entries.push_back(parse_entry(item.key(), item.value(), data.size(), name));
    }
  }
  check_coverage(entries, data.size(), name);

  for (Entry& entry : entries) {
    const auto* first = data.data() + entry.begin;
    TensorRecord record{entry.dtype, std::move(entry.shape), std::vector<std::byte>(first, data.data() + entry.end)};
    if (const auto bad = first_bad_bool(record)) {
      fail<FormatError>(name, "tensor '{}': BOOL element {} is byte {:#04x}, not 0 or 1", *entry.tensor, *bad,
                        std::to_integer<unsigned>(record.data[*bad]));
    }
    file.tensors.emplace(*entry.tensor, std::move(record));
  }
  return file;
}

namespace {

// A regular file opened for reading, and its size.
struct OpenedFile {
  Descriptor descriptor;
  uint64_t size = 0;
};

OpenedFile open_regular(const std::string& path) {
  // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; the check below refuses it, and
  // O_NONBLOCK means nothing for the regular file read here.
  OpenedFile opened{Descriptor(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC))};
  if (opened.descriptor.fd < 0) fail<IOError>(path, "cannot open: {}", errno_text(errno));
  struct stat info {};
  if (::fstat(opened.descriptor.fd, &info) != 0) fail<IOError>(path, "cannot stat: {}", errno_text(errno));
  if (!S_ISREG(info.st_mode)) fail<IOError>(path, "not a regular file");
  opened.size = static_cast<uint64_t>(info.st_size);
  return opened;
}

}  // namespace

std::map<std::string, std::string> load_metadata(const std::string& path) {
  const OpenedFile opened = open_regular(path);
  std::array<std::byte, size_field_bytes> prefix{};
  const std::size_t prefix_size = std::min<uint64_t>(opened.size, size_field_bytes);
  read_exactly(opened.descriptor.fd, prefix.data(), prefix_size, path);
  const uint64_t header_size = checked_header_size(std::span(prefix).first(prefix_size), opened.size, path);
  std::string text(header_size, '\0');
  read_exactly(opened.descriptor.fd, reinterpret_cast<std::byte*>(text.data()), text.size(), path);
  const json header = parse_header_json(text, path);
  if (!header.is_object()) fail<FormatError>(path, "header is a JSON {}, not an object", header.type_name());
  return header.contains("__metadata__") ? parse_metadata(header["__metadata__"], path)
                                         : std::map<std::string, std::string>{};
}

File load(const std::string& path) {
  const OpenedFile opened = open_regular(path);
  const Descriptor& file = opened.descriptor;
  const uint64_t size = opened.size;

  std::array<std::byte, size_field_bytes> prefix{};
  const std::size_t prefix_size = std::min<uint64_t>(size, size_field_bytes);
  read_exactly(file.fd, prefix.data(), prefix_size, path);
  checked_header_size(std::span(prefix).first(prefix_size), size, path);

  std::vector<std::byte> bytes(size);
  std::copy_n(prefix.begin(), prefix_size, bytes.begin());
  read_exactly(file.fd, bytes.data() + prefix_size, bytes.size() - prefix_size, path);
  return parse(bytes, path);
}

std::vector<std::byte> serialize(const File& file) {
  const Layout layout = plan(file);
  std::size_t total = size_field_bytes + layout.header.size();
  for (const auto* item : layout.order) total += item->second.data.size();
  std::vector<std::byte> bytes(total);
  const auto field = size_field(layout.header.size());
  auto* out = std::copy(field.begin(), field.end(), bytes.data());
  out = std::copy_n(reinterpret_cast<const std::byte*>(layout.header.data()), layout.header.size(), out);
  for (const auto* item : layout.order) out = std::copy(item->second.data.begin(), item->second.data.end(), out);
  return bytes;
}

void save_atomic(const std::string& path, const File& file, nn::Replace replace) {
  const Layout layout = plan(file);
  nn::OutputFile out(path, replace);
  const auto field = size_field(layout.header.size());
  out.write(field);
  out.write(layout.header);
  for (const auto* item : layout.order) out.write(item->second.data);
  out.commit();
}

TensorRecord make_record(DType dtype, std::vector<int64_t> shape, const void* data) {
  const uint64_t bytes = record_bytes(dtype, shape, "safetensors: make_record");
  const auto* first = static_cast<const std::byte*>(data);
  return TensorRecord{dtype, std::move(shape), bytes == 0 ? std::vector<std::byte>{}
                                                          : std::vector<std::byte>(first, first + bytes)};
}

template <Element T>
TensorRecord make_record(std::vector<int64_t> shape, std::span<const T> values) {
  const int64_t count = numel(shape);
  if (values.size() != static_cast<uint64_t>(count)) {
    fail<ValueError>("safetensors", "shape {} needs {} values, got {}", shape_text(shape), count, values.size());
  }
  return make_record(dtype_of<T>, std::move(shape), values.data());
}

namespace {

void check_record_bytes(const TensorRecord& record, std::string_view name_for_errors) {
  const uint64_t expected = record_bytes(record.dtype, record.shape, name_for_errors);
  if (record.data.size() != expected) {
    fail<ValueError>(name_for_errors, "shape {} of {} needs {} bytes, the record holds {}", shape_text(record.shape),
                     dtype_name(record.dtype), expected, record.data.size());
  }
}

// Each element read as Stored (memcpy: record bytes need not be aligned for it) and converted by `convert`.
template <class Stored, class T, class Convert>
std::vector<T> convert_each(const TensorRecord& record, Convert convert) {
  std::vector<T> out(record.data.size() / sizeof(Stored));
  for (std::size_t i = 0; i < out.size(); ++i) {
    Stored stored;
    std::memcpy(&stored, record.data.data() + i * sizeof(Stored), sizeof(Stored));
    out[i] = static_cast<T>(convert(stored));
  }
  return out;
}

template <class Stored, class T>
std::vector<T> cast_each(const TensorRecord& record) {
  return convert_each<Stored, T>(record, [](Stored stored) { return stored; });
}

}  // namespace

template <Element T>
std::vector<T> values(const TensorRecord& record, std::string_view name_for_errors) {
  if (record.dtype != dtype_of<T>) {
    fail<DTypeError>(name_for_errors, "record holds {}, asked for {}", dtype_name(record.dtype),
                     dtype_name(dtype_of<T>));
  }
  check_record_bytes(record, name_for_errors);
  std::vector<T> out(record.data.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), record.data.data(), record.data.size());
  return out;
}

template <Element T>
std::vector<T> values_as(const TensorRecord& record, std::string_view name_for_errors) {
  if (record.dtype == dtype_of<T>) return values<T>(record, name_for_errors);
  check_record_bytes(record, name_for_errors);
  if constexpr (std::floating_point<T>) {
    switch (record.dtype) {
      case DType::F16: return convert_each<uint16_t, T>(record, float_from_float16);
      case DType::BF16: return convert_each<uint16_t, T>(record, float_from_bfloat16);
      case DType::F32: return cast_each<float, T>(record);
      case DType::F64: return cast_each<double, T>(record);
      default: break;
    }
  } else {
    switch (record.dtype) {
      case DType::BOOL:
      case DType::U8: return cast_each<uint8_t, T>(record);
      case DType::I8: return cast_each<int8_t, T>(record);
      case DType::I16: return cast_each<int16_t, T>(record);
      case DType::I32: return cast_each<int32_t, T>(record);
      default: break;
    }
  }
  fail<DTypeError>(name_for_errors, "record holds {}, which does not convert to {} (floating and integer tensors "
                   "do not mix)", dtype_name(record.dtype), dtype_name(dtype_of<T>));
}

TensorRecord to_bfloat16(const TensorRecord& record, std::string_view name_for_errors) {
  if (record.dtype != DType::F32 && record.dtype != DType::F64) {
    fail<DTypeError>(name_for_errors, "record holds {}; only F32 and F64 records are rounded to BF16",
                     dtype_name(record.dtype));
  }
  const std::vector<float> floats = values_as<float>(record, name_for_errors);
  std::vector<uint16_t> halves(floats.size());
  std::transform(floats.begin(), floats.end(), halves.begin(), bfloat16_from_float);
  return make_record(DType::BF16, record.shape, halves.data());
}

template TensorRecord make_record<float>(std::vector<int64_t>, std::span<const float>);
template TensorRecord make_record<double>(std::vector<int64_t>, std::span<const double>);
template TensorRecord make_record<int64_t>(std::vector<int64_t>, std::span<const int64_t>);
template std::vector<float> values<float>(const TensorRecord&, std::string_view);
template std::vector<double> values<double>(const TensorRecord&, std::string_view);
template std::vector<int64_t> values<int64_t>(const TensorRecord&, std::string_view);
template std::vector<float> values_as<float>(const TensorRecord&, std::string_view);
template std::vector<double> values_as<double>(const TensorRecord&, std::string_view);
template std::vector<int64_t> values_as<int64_t>(const TensorRecord&, std::string_view);

}  // namespace gradformer::safetensors
