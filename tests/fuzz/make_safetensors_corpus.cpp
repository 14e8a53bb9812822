// Writes the seed files of tests/fuzz/corpus/safetensors/ into the directory given as the only argument, using
// our own writer (whose bytes match the reference library's). Not part of any build; compile it by hand:
//   clang++-14 -std=c++20 -I. tests/fuzz/make_safetensors_corpus.cpp nn/safetensors.cpp \
//     $(pkg-config --cflags --libs fmt) -o /tmp/make_corpus && /tmp/make_corpus tests/fuzz/corpus/safetensors
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "nn/safetensors.h"

namespace st = gradformer::safetensors;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output directory>\n", argv[0]);
    return 2;
  }
  const std::string directory = argv[1];

  st::File empty;
  st::File one;
  one.tensors["a"] = st::make_record<float>({2}, std::vector<float>{1.0f, 2.0f});
  one.metadata["format"] = "pt";
  st::File mixed;
  mixed.tensors["decoder.layers.0.self_attn.in_proj_weight"] =
      st::make_record<float>({3, 2}, std::vector<float>{0.5f, -1.0f, 2.0f, 0.0f, -0.0f, 3.25f});
  mixed.tensors["decoder.layers.0.norm.bias"] = st::make_record<double>({2}, std::vector<double>{0.1, -0.2});
  mixed.tensors["optimizer.step"] = st::make_record<int64_t>({}, std::vector<int64_t>{1000});
  mixed.tensors["embedding.padding"] = st::make_record<float>({0, 4}, std::vector<float>{});
  mixed.metadata["gradformer"] = "0.1.0";
  mixed.metadata["epoch"] = "3";

  // One tensor of every dtype we read, as a PyTorch or Hugging Face file holds them (bit patterns: 1.0, -2.0, 1/3).
  st::File dtypes;
  const std::vector<uint16_t> halves = {0x3C00, 0xC000, 0x3555}, brains = {0x3F80, 0xC000, 0x3EAB};
  const std::vector<uint8_t> flags = {1, 0, 1}, bytes = {0, 128, 255};
  const std::vector<int8_t> small = {-128, 0, 127};
  const std::vector<int16_t> shorts = {-32768, 1, 32767};
  const std::vector<int32_t> ints = {-7, 0, 7};
  dtypes.tensors["half"] = st::make_record(st::DType::F16, {3}, halves.data());
  dtypes.tensors["brain"] = st::make_record(st::DType::BF16, {3}, brains.data());
  dtypes.tensors["mask"] = st::make_record(st::DType::BOOL, {3}, flags.data());
  dtypes.tensors["bytes"] = st::make_record(st::DType::U8, {3}, bytes.data());
  dtypes.tensors["small"] = st::make_record(st::DType::I8, {3}, small.data());
  dtypes.tensors["short"] = st::make_record(st::DType::I16, {3}, shorts.data());
  dtypes.tensors["ids"] = st::make_record(st::DType::I32, {3}, ints.data());
  dtypes.tensors["weight"] = st::make_record<float>({1}, std::vector<float>{0.5f});
  dtypes.metadata["format"] = "pt";

  const std::vector<std::pair<std::string, const st::File*>> seeds = {{"empty.safetensors", &empty},
                                                                       {"one_f32.safetensors", &one},
                                                                       {"mixed.safetensors", &mixed},
                                                                       {"dtypes.safetensors", &dtypes}};
  for (const auto& [name, file] : seeds) {
    const std::vector<std::byte> bytes = st::serialize(*file);
    st::save_atomic(directory + "/" + name, *file);
    std::printf("%s: %zu bytes\n", name.c_str(), bytes.size());
  }
  return 0;
}
