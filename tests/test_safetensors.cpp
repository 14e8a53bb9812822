// Tests for nn/safetensors: bit-exact round trips, the reference writer's exact bytes, every dtype's conversions
// (bfloat16 rounding included), one test per rejection the parser promises, every truncation and thousands of
// seeded mutations of valid files, and atomic saving.
// Not tests of checkpoints of modules: those belong with the Tensor adapter.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "autograd/error.h"
#include "autograd/generator.h"
#include "nn/safetensors.h"

namespace st = gradformer::safetensors;
using gradformer::FormatError;

namespace {

std::vector<std::byte> to_bytes(std::string_view text) {
  const auto* first = reinterpret_cast<const std::byte*>(text.data());
  return {first, first + text.size()};
}

// A file with the given header text (padded as a writer would) followed by data_bytes bytes 0, 1, 2, ...
std::vector<std::byte> file_with_header(std::string header, std::size_t data_bytes) {
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<std::byte>(header.size() >> (8 * i)));
  const auto text = to_bytes(header);
  bytes.insert(bytes.end(), text.begin(), text.end());
  for (std::size_t i = 0; i < data_bytes; ++i) bytes.push_back(static_cast<std::byte>(i));
  return bytes;
}

// The message of the FormatError that parsing `bytes` as "ckpt.st" throws; fails the test if it throws nothing.
std::string rejection(const std::vector<std::byte>& bytes) {
  try {
    st::parse(bytes, "ckpt.st");
  } catch (const FormatError& error) {
    return error.what();
  }
  FAIL("parse accepted a malformed file");
  return {};
}

std::string rejection(const std::string& header, std::size_t data_bytes) {
  return rejection(file_with_header(header, data_bytes));
}

st::File sample_file() {
  const std::vector<float> weights = {1.5f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                                      std::numeric_limits<float>::infinity(), 1e-45f, 3.0f};
  const std::vector<double> bias = {0.1, -2.25};
  const std::vector<int64_t> steps = {std::numeric_limits<int64_t>::min(), 7};
  st::File file;
  file.tensors["decoder.weight"] = st::make_record<float>({2, 3}, weights);
  file.tensors["decoder.bias"] = st::make_record<double>({2}, bias);
  file.tensors["optimizer.step"] = st::make_record<int64_t>({2}, steps);
  file.tensors["scale"] = st::make_record<float>({}, std::vector<float>{0.5f});
  file.tensors["empty"] = st::make_record<float>({0, 4}, std::vector<float>{});
  file.metadata["format"] = "pt";
  file.metadata["gradformer"] = "0.1.0";
  return file;
}

uint64_t header_size_of(const std::vector<std::byte>& bytes) {
  uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= std::to_integer<uint64_t>(bytes[i]) << (8 * i);
  return size;
}

// A fresh directory under the system temp directory, removed when the test ends.
struct ScratchDirectory {
  std::filesystem::path path;
  explicit ScratchDirectory(const std::string& tag)
      : path(std::filesystem::temp_directory_path() / ("gradformer-" + tag + "-" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDirectory() { std::filesystem::remove_all(path); }
};

std::vector<std::byte> read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return to_bytes(text);
}

}  // namespace

TEST_CASE("safetensors: round trip through bytes is bit-exact, metadata included") {
  const st::File file = sample_file();
  const auto bytes = st::serialize(file);
  const st::File back = st::parse(bytes, "memory");
  CHECK(back == file);
  CHECK(back.metadata == file.metadata);
  // The NaN and -0.0 survive as bits, not just as values.
  const auto weights = st::values<float>(back.tensors.at("decoder.weight"), "decoder.weight");
  CHECK(std::isnan(weights[2]));
  CHECK(std::signbit(weights[1]));
  CHECK(st::serialize(back) == bytes);
}

TEST_CASE("safetensors: header is padded with spaces to a multiple of 8 and offsets tile the buffer") {
  const auto bytes = st::serialize(sample_file());
  const uint64_t header_size = header_size_of(bytes);
  CHECK(header_size % 8 == 0);
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, header_size);
  const auto json_end = header.find_last_of('}');
  REQUIRE(json_end != std::string::npos);
  CHECK(header.find_first_not_of(' ', json_end + 1) == std::string::npos);
  CHECK(json_end + 1 > header_size - 8);  // no more padding than needed
  // The reference writer's order: __metadata__, then I64, F64, F32 tensors, each group by name.
  const std::vector<std::string> order = {"__metadata__", "optimizer.step", "decoder.bias", "decoder.weight",
                                          "empty", "scale"};
  std::size_t previous = 0;
  for (const auto& key : order) {
    const auto at = header.find("\"" + key + "\"");
    REQUIRE(at != std::string::npos);
    CHECK(at >= previous);
    previous = at;
  }
  CHECK(header.find(R"("optimizer.step":{"dtype":"I64","shape":[2],"data_offsets":[0,16]})") != std::string::npos);
  CHECK(header.find(R"("decoder.bias":{"dtype":"F64","shape":[2],"data_offsets":[16,32]})") != std::string::npos);
  CHECK(header.find(R"("decoder.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[32,56]})") !=
        std::string::npos);
  CHECK(header.find(R"("empty":{"dtype":"F32","shape":[0,4],"data_offsets":[56,56]})") != std::string::npos);
  CHECK(header.find(R"("scale":{"dtype":"F32","shape":[],"data_offsets":[56,60]})") != std::string::npos);
  CHECK(bytes.size() == 8 + header_size + 60);
}

TEST_CASE("safetensors: a file as Python's safetensors writes it parses, and we write the same bytes") {
  // save_file({"a": torch.tensor([1.0, 2.0])}, path, metadata={"format": "pt"}): compact JSON, __metadata__
  // first, padded with spaces to a multiple of 8; the data is 1.0f and 2.0f little-endian.
  const std::string header = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<std::byte> bytes = file_with_header(header, 0);
  const unsigned char data[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40};
  for (const unsigned char byte : data) bytes.push_back(static_cast<std::byte>(byte));
  CHECK(header_size_of(bytes) == 88);  // 85 characters of JSON, 3 spaces

  const st::File file = st::parse(bytes, "python.safetensors");
  REQUIRE(file.tensors.size() == 1);
  CHECK(file.metadata == std::map<std::string, std::string>{{"format", "pt"}});
  const st::TensorRecord& a = file.tensors.at("a");
  CHECK(a.dtype == st::DType::F32);
  CHECK(a.shape == std::vector<int64_t>{2});
  CHECK(st::values<float>(a, "a") == std::vector<float>{1.0f, 2.0f});
  CHECK(st::serialize(file) == bytes);

  // With no metadata and no tensors the reference writes "{}" and six spaces.
  CHECK(st::serialize(st::File{}) == file_with_header("{}", 0));
  CHECK(st::parse(file_with_header("{}", 0), "empty") == st::File{});
}

TEST_CASE("safetensors: typed records and accessors check dtypes and counts") {
  const std::vector<double> values = {1.0, 2.0, 3.0, 4.0, 5.0, 6.0};
  const st::TensorRecord record = st::make_record<double>({3, 2}, values);
  CHECK(record.dtype == st::DType::F64);
  CHECK(record.data.size() == 48);
  CHECK(st::values<double>(record, "w") == values);
  CHECK(st::make_record(st::DType::F64, {3, 2}, values.data()) == record);
  CHECK_THROWS_AS(st::values<float>(record, "w"), gradformer::DTypeError);
  CHECK_THROWS_WITH(st::values<int64_t>(record, "w"), "w: record holds F64, asked for I64");
  CHECK_THROWS_AS(st::make_record<double>({4}, values), gradformer::ValueError);
  CHECK_THROWS_AS(st::make_record<double>({-1}, values), gradformer::ValueError);
  CHECK(st::numel(std::vector<int64_t>{2, 3, 4}) == 24);
  CHECK(st::numel(std::vector<int64_t>{}) == 1);
  CHECK_THROWS_AS(st::numel(std::vector<int64_t>{1LL << 32, 1LL << 32}), gradformer::ValueError);
  CHECK(st::dtype_name(st::DType::I64) == "I64");
  CHECK(st::dtype_size(st::DType::F32) == 4);
}

namespace {

template <class T>
st::TensorRecord raw_record(st::DType dtype, std::vector<int64_t> shape, const std::vector<T>& elements) {
  REQUIRE(st::dtype_size(dtype) == sizeof(T));
  return st::make_record(dtype, std::move(shape), elements.data());
}

// One tensor of every dtype we read. Element bits worked out by hand from the IEEE binary16 and bfloat16 layouts
// (sign, 5 or 8 exponent bits).
st::File all_dtypes_file() {
  st::File file;
  file.tensors["half"] = raw_record<uint16_t>(st::DType::F16, {8}, {0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x03FF,
                                                                   0x8000, 0xFC00});
  file.tensors["brain"] = raw_record<uint16_t>(st::DType::BF16, {2, 2}, {0x3F80, 0xC040, 0x3EAB, 0x0001});
  file.tensors["mask"] = raw_record<uint8_t>(st::DType::BOOL, {3}, {1, 0, 1});
  file.tensors["bytes"] = raw_record<uint8_t>(st::DType::U8, {2}, {0, 255});
  file.tensors["small"] = raw_record<int8_t>(st::DType::I8, {2}, {-128, 127});
  file.tensors["short"] = raw_record<int16_t>(st::DType::I16, {2}, {-32768, 32767});
  file.tensors["ids"] = raw_record<int32_t>(st::DType::I32, {2}, {-2147483647 - 1, 7});
  file.tensors["weight"] = st::make_record<float>({2}, std::vector<float>{0.25f, -1.5f});
  file.tensors["bias"] = st::make_record<double>({1}, std::vector<double>{0.1});
  file.tensors["step"] = st::make_record<int64_t>({}, std::vector<int64_t>{-3});
  return file;
}

}  // namespace

TEST_CASE("safetensors: every dtype PyTorch writes parses, round trips and converts as Tensor.to does") {
  const st::File file = all_dtypes_file();
  const auto bytes = st::serialize(file);
  const st::File back = st::parse(bytes, "all.safetensors");
  CHECK(back == file);
  CHECK(st::serialize(back) == bytes);
  // The reference writer's order: dtypes by its enum, descending, so every tensor stays aligned to its size.
  const std::string header(reinterpret_cast<const char*>(bytes.data()) + 8, header_size_of(bytes));
  std::size_t previous = 0;
  for (const char* key : {"step", "bias", "weight", "ids", "brain", "half", "short", "small", "bytes", "mask"}) {
    CAPTURE(key);
    const auto at = header.find(fmt::format("\"{}\"", key));
    REQUIRE(at != std::string::npos);
    CHECK(at > previous);
    previous = at;
  }

  CHECK(st::values_as<float>(back.tensors.at("half"), "half") ==
        std::vector<float>{1.0f, -2.0f, 0.333251953125f, 65504.0f, std::ldexp(1.0f, -24), 1023 * std::ldexp(1.0f, -24),
                           -0.0f, -std::numeric_limits<float>::infinity()});
  CHECK(std::signbit(st::values_as<float>(back.tensors.at("half"), "half")[6]));
  CHECK(st::values_as<double>(back.tensors.at("brain"), "brain") ==
        std::vector<double>{1.0, -3.0, 0.333984375, std::ldexp(1.0, -133)});
  CHECK(st::values_as<int64_t>(back.tensors.at("mask"), "mask") == std::vector<int64_t>{1, 0, 1});
  CHECK(st::values_as<int64_t>(back.tensors.at("bytes"), "bytes") == std::vector<int64_t>{0, 255});
  CHECK(st::values_as<int64_t>(back.tensors.at("small"), "small") == std::vector<int64_t>{-128, 127});
  CHECK(st::values_as<int64_t>(back.tensors.at("short"), "short") == std::vector<int64_t>{-32768, 32767});
  CHECK(st::values_as<int64_t>(back.tensors.at("ids"), "ids") == std::vector<int64_t>{-2147483648LL, 7});
  CHECK(st::values_as<double>(back.tensors.at("weight"), "weight") == std::vector<double>{0.25, -1.5});
  CHECK(st::values_as<float>(back.tensors.at("bias"), "bias") == std::vector<float>{0.1f});
  CHECK(st::values_as<int64_t>(back.tensors.at("step"), "step") == std::vector<int64_t>{-3});
  CHECK(std::isnan(st::float_from_float16(0x7E00)));

  // Floating and integer tensors do not mix: such a tensor belongs to another model.
  CHECK_THROWS_WITH_AS(st::values_as<int64_t>(back.tensors.at("brain"), "brain"),
                       "brain: record holds BF16, which does not convert to I64 (floating and integer tensors do not mix)",
                       gradformer::DTypeError);
  CHECK_THROWS_AS(st::values_as<float>(back.tensors.at("ids"), "ids"), gradformer::DTypeError);
}

TEST_CASE("safetensors: f32 to bfloat16 rounds to nearest even as PyTorch does") {
  const auto bits = [](uint32_t f32_bits) { return st::bfloat16_from_float(std::bit_cast<float>(f32_bits)); };
  CHECK(bits(0x3F800000) == 0x3F80);  // 1.0 exactly
  CHECK(bits(0x3EAAAAAB) == 0x3EAB);  // 1/3: the dropped half 0xAAAB is above the halfway point
  CHECK(bits(0x3F808000) == 0x3F80);  // halfway, kept half even: stays
  CHECK(bits(0x3F818000) == 0x3F82);  // halfway, kept half odd: up to even
  CHECK(bits(0x3F808001) == 0x3F81);  // just above halfway
  CHECK(bits(0x3F807FFF) == 0x3F80);  // just below
  CHECK(bits(0xBF818000) == 0xBF82);  // negative values mirror
  CHECK(bits(0x7F7FFFFF) == 0x7F80);  // the largest float rounds up to infinity
  CHECK(bits(0x7F800000) == 0x7F80);
  CHECK(bits(0x80000000) == 0x8000);  // -0 keeps its sign
  CHECK(bits(0x00018000) == 0x0002);  // subnormals round the same way
  CHECK(bits(0x7FA00000) == 0x7FC0);  // a signalling NaN becomes the quiet one
  CHECK(bits(0xFFC00001) == 0x7FC0);
  for (const float value : {1.0f, -3.0f, 0.333984375f, 65536.0f})
    CHECK(st::float_from_bfloat16(st::bfloat16_from_float(value)) == value);

  const st::TensorRecord wide = st::make_record<double>({3}, std::vector<double>{1.0, 1.0 / 3.0, -1e40});
  const st::TensorRecord rounded = st::to_bfloat16(wide, "w");
  CHECK(rounded.dtype == st::DType::BF16);
  CHECK(rounded.shape == std::vector<int64_t>{3});
  CHECK(st::values_as<float>(rounded, "w") ==
        std::vector<float>{1.0f, 0.333984375f, -std::numeric_limits<float>::infinity()});
  CHECK_THROWS_WITH_AS(st::to_bfloat16(st::make_record<int64_t>({1}, std::vector<int64_t>{1}), "step"),
                       "step: record holds I64; only F32 and F64 records are rounded to BF16", gradformer::DTypeError);
}

TEST_CASE("safetensors: a BOOL byte other than 0 or 1 is refused on read and on write") {
  const std::string header = R"({"m":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}})";
  CHECK(rejection(header, 4) == "ckpt.st: tensor 'm': BOOL element 2 is byte 0x02, not 0 or 1");  // data 0,1,2,3
  const std::string two = R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})";  // data 0,1
  CHECK(st::parse(file_with_header(two, 2), "ok").tensors.at("m") == raw_record<uint8_t>(st::DType::BOOL, {2}, {0, 1}));
  st::File file;
  file.tensors["m"] = raw_record<uint8_t>(st::DType::BOOL, {2}, {1, 7});
  CHECK_THROWS_WITH_AS(st::serialize(file), "safetensors: tensor 'm': BOOL element 1 is byte 0x07, not 0 or 1",
                       gradformer::ValueError);
}

TEST_CASE("safetensors: serialize rejects records it cannot write faithfully") {
  st::File file;
  file.tensors["w"] = st::TensorRecord{st::DType::F32, {2}, std::vector<std::byte>(7)};
  CHECK_THROWS_WITH_AS(st::serialize(file), doctest::Contains("tensor 'w'"), gradformer::ValueError);
  file.tensors.clear();
  file.tensors["__metadata__"] = st::make_record<float>({}, std::vector<float>{1.0f});
  CHECK_THROWS_AS(st::serialize(file), gradformer::ValueError);
  file.tensors.clear();
  file.tensors["bad\xff"] = st::make_record<float>({}, std::vector<float>{1.0f});
  CHECK_THROWS_WITH_AS(st::serialize(file), doctest::Contains("UTF-8"), gradformer::ValueError);
}

TEST_CASE("safetensors: every truncated prefix of a valid file is rejected, naming the file") {
  const auto bytes = st::serialize(sample_file());
  for (std::size_t length = 0; length < bytes.size(); ++length) {
    CAPTURE(length);
    const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(length));
    try {
      st::parse(prefix, "truncated.safetensors");
      FAIL("a truncated file parsed");
    } catch (const FormatError& error) {
      const std::string message = error.what();
      CHECK(message.starts_with("truncated.safetensors: "));
      CHECK(message.size() > std::string("truncated.safetensors: ").size());
    }
  }
}

TEST_CASE("safetensors: 5000 seeded mutations either parse to a valid file or throw FormatError") {
  // Half of them start from the sample, half from a file of every dtype.
  const std::vector<std::byte> originals[] = {st::serialize(sample_file()), st::serialize(all_dtypes_file())};
  // Bytes that steer mutations through JSON structure rather than only into invalid tokens.
  const std::string_view json_bytes = "{}[]\":,0123456789-e. \\u";
  gradformer::Generator generator(20240611);
  int parsed = 0;
  int rejected = 0;
  for (int trial = 0; trial < 5000; ++trial) {
    const std::vector<std::byte>& original = originals[trial % 2];
    const uint64_t header_end = 8 + header_size_of(original);
    std::vector<std::byte> bytes = original;
    const auto edits = 1 + generator.below(4);
    for (uint64_t edit = 0; edit < edits; ++edit) {
      // Mostly inside the size field and header, where the structure is.
      const uint64_t span = generator.below(10) < 8 ? header_end : bytes.size();
      const auto at = static_cast<std::size_t>(generator.below(span));
      switch (generator.below(4)) {
        case 0: bytes[at] = static_cast<std::byte>(generator.below(256)); break;
        case 1: bytes[at] = static_cast<std::byte>(json_bytes[generator.below(json_bytes.size())]); break;
        case 2: bytes[at] ^= static_cast<std::byte>(1u << generator.below(8)); break;
        default:
          bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(at));
          break;
      }
    }
    CAPTURE(trial);
    try {
      const st::File file = st::parse(bytes, "mutant");
      // Whatever parsed must be writable and read back as itself, and convert to its kind's element type.
      CHECK(st::parse(st::serialize(file), "rewritten") == file);
      for (const auto& [name, record] : file.tensors) {
        const auto count = static_cast<std::size_t>(st::numel(record.shape));
        CHECK((st::is_floating(record.dtype) ? st::values_as<double>(record, name).size()
                                             : st::values_as<int64_t>(record, name).size()) == count);
      }
      ++parsed;
    } catch (const FormatError& error) {
      CHECK(std::string_view(error.what()).starts_with("mutant: "));
      ++rejected;
    } catch (const std::exception& error) {
      FAIL("trial ", trial, " threw something other than FormatError: ", error.what());
    } catch (...) {
      FAIL("trial ", trial, " threw a non-standard exception");
    }
  }
  MESSAGE("mutants parsed: ", parsed, ", rejected: ", rejected);
  CHECK(parsed > 0);
  CHECK(rejected > 0);
}

TEST_CASE("safetensors: header sizes are checked before anything is allocated") {
  CHECK(rejection(std::vector<std::byte>(5)).find("shorter than the 8-byte header size field") != std::string::npos);
  std::vector<std::byte> huge = file_with_header("{}", 0);
  const uint64_t claim = uint64_t{1} << 60;
  for (int i = 0; i < 8; ++i) huge[static_cast<std::size_t>(i)] = static_cast<std::byte>(claim >> (8 * i));
  CHECK(rejection(huge) == "ckpt.st: header size 1152921504606846976 exceeds the 8 bytes that follow the size field");
  for (auto& byte : huge) byte = std::byte{0xff};
  CHECK(rejection(huge).find("header size 18446744073709551615 exceeds") != std::string::npos);

  // A header over the cap is rejected even when the file really is that long.
  std::vector<std::byte> long_file(8 + st::max_header_size + 8, std::byte{' '});
  const uint64_t over = st::max_header_size + 8;
  for (int i = 0; i < 8; ++i) long_file[static_cast<std::size_t>(i)] = static_cast<std::byte>(over >> (8 * i));
  CHECK(rejection(long_file).find("exceeds the limit of 100000000 bytes") != std::string::npos);
}

TEST_CASE("safetensors: malformed headers are rejected with specific messages") {
  const std::string entry = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  SUBCASE("JSON") {
    CHECK(rejection(R"({"w":)", 0).find("header is not valid JSON") != std::string::npos);
    CHECK(rejection("{\"w\xc3\x28\":" + entry + "}", 8).find("header is not valid JSON") != std::string::npos);
    CHECK(rejection(R"(/* comment */ {})", 0).find("header is not valid JSON") != std::string::npos);
    CHECK(rejection("[1, 2]", 0) == "ckpt.st: header is a JSON array, not an object");
    CHECK(rejection(std::string(20, '[') + std::string(20, ']'), 0).find("nests deeper") != std::string::npos);
    CHECK(rejection(R"({"w":)" + entry + R"(,"w":)" + entry + "}", 8) ==
          "ckpt.st: header has the key \"w\" twice in one object");
    CHECK(rejection(R"({"w":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", 8)
              .find("key \"dtype\" twice") != std::string::npos);
  }
  SUBCASE("metadata") {
    CHECK(rejection(R"({"__metadata__":["a"]})", 0) == "ckpt.st: __metadata__ is a JSON array, not an object");
    CHECK(rejection(R"({"__metadata__":{"epoch":3}})", 0) ==
          "ckpt.st: __metadata__ value of \"epoch\" is a JSON number, not a string");
  }
  SUBCASE("entries") {
    CHECK(rejection(R"({"w":[0,8]})", 8) == "ckpt.st: tensor 'w': entry is a JSON array, not an object");
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2]}})", 8) == "ckpt.st: tensor 'w': missing \"data_offsets\"");
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}})", 8)
              .find("tensor 'w': unexpected key \"strides\"") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"U16","shape":[4],"data_offsets":[0,8]}})", 8) ==
          "ckpt.st: tensor 'w': dtype U16 is not supported (BOOL, U8, I8, I16, F16, BF16, I32, F32, F64, I64 are)");
    CHECK(rejection(R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", 8)
              .find("dtype F8_E4M3 is not supported") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8) ==
          "ckpt.st: tensor 'w': dtype \"Q7\" is not a safetensors dtype");
    CHECK(rejection(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", 8)
              .find("dtype is a JSON number, not a string") != std::string::npos);
  }
  SUBCASE("shapes") {
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)
              .find("holds -2, not a non-negative integer") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8)
              .find("not a non-negative integer") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8)
              .find("shape is a JSON number, not an array") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8)
              .find("dimension beyond int64") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0)
              .find("more elements than 64 bits can count") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F64","shape":[1152921504606846976,8],"data_offsets":[0,8]}})", 8)
              .find("more elements than 64 bits can count") != std::string::npos);
  }
  SUBCASE("offsets") {
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)
              .find("is not two non-negative integers") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8)
              .find("is not two non-negative integers") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8)
              .find("begin after they end") != std::string::npos);
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4) ==
          "ckpt.st: tensor 'w': data_offsets [0, 8] end past the 4-byte data buffer");
    CHECK(rejection(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8) ==
          "ckpt.st: tensor 'w': data_offsets [0, 8] span 8 bytes, but shape [3] of F32 needs 12");
  }
  SUBCASE("coverage") {
    CHECK(rejection(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                    12) == "ckpt.st: tensor 'b': data_offsets [4, 12] overlap tensor 'a' at [0, 8]");
    CHECK(rejection(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                    R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                    8)
              .find("overlap") != std::string::npos);
    CHECK(rejection(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8) ==
          "ckpt.st: data buffer bytes [0, 4) belong to no tensor");
    CHECK(rejection(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8) ==
          "ckpt.st: data buffer bytes [4, 8) belong to no tensor");
    CHECK(rejection("{}", 1) == "ckpt.st: data buffer bytes [0, 1) belong to no tensor");
  }
}

TEST_CASE("safetensors: valid but unusual headers parse") {
  // Out-of-order offsets, zero-size tensors sharing an offset, whitespace and no __metadata__.
  const std::string header = R"( { "b" : {"data_offsets":[8,16],"shape":[2],"dtype":"F32"},)"
                             R"( "a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
                             R"( "z1":{"dtype":"F64","shape":[0],"data_offsets":[8,8]},)"
                             R"( "z2":{"dtype":"F32","shape":[3,0],"data_offsets":[8,8]}})";
  const st::File file = st::parse(file_with_header(header, 16), "unusual");
  CHECK(file.tensors.size() == 4);
  CHECK(file.tensors.at("b").data.size() == 8);
  CHECK(std::to_integer<int>(file.tensors.at("b").data[0]) == 8);
  CHECK(file.tensors.at("z2").shape == std::vector<int64_t>{3, 0});
  CHECK(file.metadata.empty());
  // An unpadded header is legal: padding is what writers do, not what readers demand.
  CHECK(st::parse(file_with_header(std::string(R"({"__metadata__":{}})"), 0), "unpadded").tensors.empty());
}

TEST_CASE("safetensors: save_atomic then load round-trips and leaves no temporary file") {
  const ScratchDirectory scratch("safetensors-save");
  const std::string path = (scratch.path / "model.safetensors").string();
  const st::File file = sample_file();
  st::save_atomic(path, file);
  CHECK(st::load(path) == file);
  CHECK(read_all(path) == st::serialize(file));

  // Saving over an existing checkpoint replaces it whole.
  st::File next;
  next.tensors["only"] = st::make_record<int64_t>({1}, std::vector<int64_t>{42});
  st::save_atomic(path, next);
  CHECK(st::load(path) == next);
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(scratch.path)) {
    CHECK(entry.path().filename() == "model.safetensors");
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("safetensors: remove_stale_temporaries removes a dead writer's file, keeps a live one's and the rest") {
  const ScratchDirectory scratch("safetensors-stale");
  const std::string path = (scratch.path / "last.safetensors").string();
  st::save_atomic(path, sample_file());
  // A pid above any kernel's pid_max (4,194,304 at most) names no process; this process is a live writer.
  const std::string dead = path + ".tmp.999999999", live = fmt::format("{}.tmp.{}", path, ::getpid());
  const std::vector<std::string> kept{live, path + ".tmp.notapid", path + ".tmp.",
                                      (scratch.path / "x.tmp.999999999").string()};
  for (const std::string& name : kept) std::ofstream(name) << "half";
  std::ofstream(dead) << "half";

  CHECK(gradformer::nn::remove_stale_temporaries(path) == 1);
  CHECK_FALSE(std::filesystem::exists(dead));
  for (const std::string& name : kept) CHECK(std::filesystem::exists(name));
  CHECK(st::load(path) == sample_file());
  CHECK(gradformer::nn::remove_stale_temporaries(path) == 0);
  CHECK(gradformer::nn::remove_stale_temporaries((scratch.path / "none" / "last.safetensors").string()) == 0);
}

TEST_CASE("safetensors: a failed save throws and never damages the old file") {
  const ScratchDirectory scratch("safetensors-fail");
  const std::string path = (scratch.path / "model.safetensors").string();
  st::save_atomic(path, sample_file());
  const auto before = read_all(path);

  // A record serialize rejects: nothing touches the disk.
  st::File bad;
  bad.tensors["w"] = st::TensorRecord{st::DType::F32, {2}, std::vector<std::byte>(3)};
  CHECK_THROWS_AS(st::save_atomic(path, bad), gradformer::ValueError);
  CHECK(read_all(path) == before);

  // A directory that does not exist: IOError, and no temporary file left anywhere.
  CHECK_THROWS_AS(st::save_atomic((scratch.path / "missing" / "model.safetensors").string(), sample_file()),
                  gradformer::IOError);

  // The target is a directory: refused before anything is written (nn::OutputFile's rule).
  const auto occupied = scratch.path / "occupied";
  std::filesystem::create_directories(occupied / "inside");
  CHECK_THROWS_WITH_AS(st::save_atomic(occupied.string(), sample_file()), doctest::Contains("is a directory"),
                       gradformer::IOError);
  CHECK(std::filesystem::is_directory(occupied / "inside"));

  CHECK(read_all(path) == before);
  for (const auto& entry : std::filesystem::directory_iterator(scratch.path)) {
    CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
  }
}

TEST_CASE("safetensors: load reports unreadable and malformed files") {
  const ScratchDirectory scratch("safetensors-load");
  CHECK_THROWS_AS(st::load((scratch.path / "absent.safetensors").string()), gradformer::IOError);
  CHECK_THROWS_WITH_AS(st::load(scratch.path.string()), doctest::Contains("not a regular file"), gradformer::IOError);

  const auto path = scratch.path / "short.safetensors";
  const auto bytes = st::serialize(sample_file());
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() - 1));
  }
  CHECK_THROWS_WITH_AS(st::load(path.string()), doctest::Contains((path.string() + ": ").c_str()), FormatError);

  const auto huge = scratch.path / "huge.safetensors";
  {
    std::ofstream out(huge, std::ios::binary);
    const unsigned char claim[] = {0, 0, 0, 0, 0, 0, 0, 0x10, '{', '}'};
    out.write(reinterpret_cast<const char*>(claim), sizeof(claim));
  }
  CHECK_THROWS_WITH_AS(st::load(huge.string()), doctest::Contains("exceeds the 2 bytes that follow"), FormatError);
}
