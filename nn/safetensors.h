// The safetensors checkpoint format: an 8-byte little-endian header size N, N bytes of JSON naming each tensor's
// dtype, shape and byte range, then one byte buffer holding every tensor's data (little-endian, C order).
// This file reads and writes that format with full validation and atomic replacement of the target file.
// It is not the checkpoint logic (which parameters, optimizer state, RNG state) and knows nothing of Tensor:
// a record is a dtype, a shape and raw bytes, and an adapter elsewhere turns records into tensors and back.
// It reads and writes BOOL, U8, I8, I16, I32, I64, F16, BF16, F32 and F64 (what PyTorch and Hugging Face files
// hold) and converts elements between them (values_as, to_bfloat16); the other dtypes of the format (unsigned
// 16-64 bit, 4-8 bit floats, complex) are rejected with a message naming the dtype.
#pragma once

#include "nn/output_file.h"

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::safetensors {

// Records hold raw bytes in the file's byte order; reading them in place needs a little-endian host.
static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian; big-endian hosts "
                                                            "would need byte swapping in make_record and values");

// In the order of the reference implementation's Dtype enum (by increasing element size), which serialize's
// layout follows.
enum class DType { BOOL, U8, I8, I16, F16, BF16, I32, F32, F64, I64 };

std::string_view dtype_name(DType dtype);  // "F32", "BF16", "BOOL", ...: the spelling in the file
std::size_t dtype_size(DType dtype);       // bytes per element
bool is_floating(DType dtype);             // F16, BF16, F32, F64

// bfloat16 is the top half of an f32: reading widens exactly; writing rounds to nearest, ties to even, and turns
// every NaN into the quiet NaN 0x7FC0, as PyTorch's c10::BFloat16 does.
float float_from_bfloat16(uint16_t bits);
uint16_t bfloat16_from_float(float value);
// IEEE binary16 to f32 (exact: every half is a float), subnormals, infinities and NaN payloads included.
float float_from_float16(uint16_t bits);

// One tensor as stored: `data` holds exactly numel(shape) * dtype_size(dtype) bytes, little-endian, C order;
// a BOOL element is one byte, 0 or 1.
// A plain byte vector rather than a typed one so that one record type serves every dtype; its storage comes
// from operator new, so it is aligned for every dtype we support, though `values` copies out regardless.
struct TensorRecord {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> data;

  bool operator==(const TensorRecord&) const = default;
};

// A whole checkpoint. std::map so that iteration, and hence serialisation, does not depend on insertion order.
// `metadata` is the optional "__metadata__" object of the format (free-form string pairs).
struct File {
  std::map<std::string, TensorRecord> tensors;
  std::map<std::string, std::string> metadata;

  bool operator==(const File&) const = default;
};

// The header size the reference implementation accepts at most; a larger claim is a corrupt or hostile file.
inline constexpr uint64_t max_header_size = 100'000'000;

// Parses a whole file held in memory. Every check listed in safetensors.cpp failing throws FormatError with a
// message starting "<name_for_errors>: " and naming the tensor concerned. The result owns copies of the data.
File parse(std::span<const std::byte> bytes, std::string_view name_for_errors);

// The "__metadata__" of the file at `path`, reading the header alone (for a question about many large files).
// Throws as load does for what it reads.
std::map<std::string, std::string> load_metadata(const std::string& path);

// Reads and parses the file at `path`. The header size is checked against the file size before the file is
// read. Throws IOError when the file cannot be opened or read, FormatError when its contents are malformed.
File load(const std::string& path);

// The bytes of `file` in the layout the reference (Python/Rust) library writes: "__metadata__" first if any,
// tensors ordered by dtype as its enum, descending (I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL: largest
// elements first) and by name within a dtype, contiguous from offset 0,
// the JSON compact and padded with spaces to a multiple of 8 so the data buffer starts 8-aligned.
// Throws ValueError for a record whose byte count does not match its shape, a BOOL byte other than 0 or 1,
// a negative dimension, a tensor
// named "__metadata__", a name or metadata string that is not UTF-8, or a header over max_header_size.
std::vector<std::byte> serialize(const File& file);

// Writes `file` through nn::OutputFile (nn/output_file.h): a regular `path` is replaced atomically through
// `path + ".tmp.<pid>"`, so it holds either the old contents or the complete new ones, never a mixture; a symbolic
// link is followed; a device or FIFO is written in place. On failure the temporary file is removed and IOError
// thrown (ValueError, before any disk access, for a record serialize rejects). With Replace::never a `path` that
// exists (before or when the write completes) is left as it is, and IOError says so.
void save_atomic(const std::string& path, const File& file, nn::Replace replace = nn::Replace::existing);


// numel of a shape; throws ValueError for a negative dimension or a product that overflows int64_t.
int64_t numel(std::span<const int64_t> shape);

// A record copying numel(shape) * dtype_size(dtype) bytes from `data` (which may be null when that is 0).
TensorRecord make_record(DType dtype, std::vector<int64_t> shape, const void* data);

template <class T>
concept Element = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int64_t>;

template <Element T>
inline constexpr DType dtype_of = std::same_as<T, float> ? DType::F32 : std::same_as<T, double> ? DType::F64
                                                                                                 : DType::I64;

// A record of dtype_of<T> from typed values; throws ValueError when values.size() != numel(shape).
template <Element T>
TensorRecord make_record(std::vector<int64_t> shape, std::span<const T> values);

// The record's elements copied out as T; throws DTypeError naming both dtypes when the record is not dtype_of<T>.
// `name_for_errors` is the tensor name (or any label) the message should start with.
template <Element T>
std::vector<T> values(const TensorRecord& record, std::string_view name_for_errors);

// The record's elements converted to T as PyTorch's Tensor.to converts them: a floating record (F16, BF16, F32,
// F64) to float or double (F64 to float rounds to nearest), an integer or BOOL record to int64_t. A floating
// record asked for as int64_t, or an integer one as a float, throws DTypeError naming both: such a tensor
// belongs to another model, not to a different precision of this one.
template <Element T>
std::vector<T> values_as(const TensorRecord& record, std::string_view name_for_errors);

// A BF16 record of an F32 or F64 record's values, each rounded by bfloat16_from_float (F64 through F32 first, as
// PyTorch's .to(torch.bfloat16) does); throws DTypeError for other dtypes.
TensorRecord to_bfloat16(const TensorRecord& record, std::string_view name_for_errors);

}  // namespace gradformer::safetensors
