// The safetensors checkpoint format: an 8-byte little-endian header size N, N bytes of JSON naming each tensor's
// dtype, shape and byte range, then one byte buffer holding every tensor's data (little-endian, C order).
// This file reads and writes that format with full validation and atomic replacement of the target file.
// It is not the checkpoint logic (which parameters, optimizer state, RNG state) and knows nothing of Tensor:
// a record is a dtype, a shape and raw bytes, and an adapter elsewhere turns records into tensors and back.
// Only F32, F64 and I64 are supported; files holding other dtypes are rejected with a message naming the dtype.
#pragma once

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

enum class DType { F32, F64, I64 };

std::string_view dtype_name(DType dtype);  // "F32", "F64", "I64": the spelling in the file
std::size_t dtype_size(DType dtype);       // bytes per element

// One tensor as stored: `data` holds exactly numel(shape) * dtype_size(dtype) bytes, little-endian, C order.
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

// Reads and parses the file at `path`. The header size is checked against the file size before the file is
// read. Throws IOError when the file cannot be opened or read, FormatError when its contents are malformed.
File load(const std::string& path);

// The bytes of `file` in the layout the reference (Python/Rust) library writes: "__metadata__" first if any,
// tensors ordered I64, F64, F32 (largest elements first) and by name within a dtype, contiguous from offset 0,
// the JSON compact and padded with spaces to a multiple of 8 so the data buffer starts 8-aligned.
// Throws ValueError for a record whose byte count does not match its shape, a negative dimension, a tensor
// named "__metadata__", a name or metadata string that is not UTF-8, or a header over max_header_size.
std::vector<std::byte> serialize(const File& file);

// Writes `file` through nn::OutputFile (nn/output_file.h): a regular `path` is replaced atomically through
// `path + ".tmp.<pid>"`, so it holds either the old contents or the complete new ones, never a mixture; a symbolic
// link is followed; a device or FIFO is written in place. On failure the temporary file is removed and IOError
// thrown (ValueError, before any disk access, for a record serialize rejects).
void save_atomic(const std::string& path, const File& file);

// Removes the `path + ".tmp.<pid>"` files save_atomic left behind when its process died mid-write (SIGKILL, power
// loss), those whose pid is no running process; a live writer's file stays. Returns how many it removed.
size_t remove_stale_temporaries(const std::string& path);

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

}  // namespace gradformer::safetensors
