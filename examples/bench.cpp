// gradformer-bench: the training step and greedy decoding of ../shared/bench/torch_reference.py, measured the
// same way and printed in the same lines, so ../shared/bench/compare.sh can put the two side by side:
//   train CONFIG step_ms=... tgt_tok_per_s=... gflops=...
//   decode CONFIG ms=... tok_per_s=...
// then its own: `memory` (peak RSS, the tensors' peak) and `kernels` (the OpenBLAS kernels in use, which
// use_openblas_kernels_for_this_cpu in ops/threads.h sees to).
// The model is the reference's: source and target embeddings scaled by √d, nn::Transformer (post-norm,
// dropout 0.1), an output Linear; Adam (lr 1e-4, betas 0.9/0.98, eps 1e-9); label smoothing 0.1; random tokens.
// Decoding uses the decoder's key/value cache, so each step costs one token's work (the reference recomputes).
// --precision bf16 runs both under AutocastGuard, as the reference's --bf16 runs under torch.autocast.
// --peak prints instead what our GEMM path (gemm::multiply) reaches in f32 and in bf16 on the products of a
// training step and of a decoding step, the ceilings a step's gflops and a decoding's speed are read against.
#include "autograd/allocator.h"
#include "examples/cli.h"
// Under `mpirun -np N` each rank trains on its share of the same batch rows and the flat gradient is allreduced
// (nn/distributed.h: buckets of --bucket-mb, started during backward unless --no-overlap), so tgt_tok_per_s is
// the job's; rank 0 alone prints, adds an `allreduce` line (the wait after backward) and decodes.
#include "nn/distributed.h"
#include "nn/flat_parameters.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "ops/autocast_products.h"
#include "ops/gemm.h"
#include "ops/ops.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

using namespace gradformer;

namespace {

struct Config {
  int64_t d, heads, ff, layers, vocab, batch, src_len, tgt_len;
  int steps;
};

// name: (d_model, heads, d_ff, layers, vocab, batch, src_len, tgt_len), as torch_reference.py's CONFIGS.
const std::map<std::string, Config> kConfigs{
    {"toy", {64, 4, 256, 2, 100, 64, 12, 12, 50}},
    {"small", {256, 4, 1024, 3, 1000, 64, 20, 20, 10}},
    {"base", {512, 8, 2048, 6, 8000, 32, 24, 24, 4}},
};

// Matmul FLOPs of one training step (forward + backward = 3x forward), the reference's formula.
double train_flops(const Config& c) {
  const double d = static_cast<double>(c.d), ff = static_cast<double>(c.ff), s = static_cast<double>(c.src_len),
               t = static_cast<double>(c.tgt_len);
  const double enc = s * (8 * d * d + 4 * s * d + 4 * d * ff);
  const double dec = t * (8 * d * d + 4 * t * d) + t * (4 * d * d + 4 * s * d) + s * 4 * d * d + t * 4 * d * ff;
  const double out = t * 2 * d * static_cast<double>(c.vocab);
  return 3 * static_cast<double>(c.batch) * (static_cast<double>(c.layers) * (enc + dec) + out);
}

Tensor random_tokens(Generator& gen, int64_t rows, int64_t cols, int64_t vocab) {
  std::vector<int64_t> ids(static_cast<size_t>(rows * cols));
  for (int64_t& id : ids) id = static_cast<int64_t>(gen.below(static_cast<uint64_t>(vocab)));
  return from_vector(ids, {rows, cols});
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// GFLOP/s of gemm::multiply on [m, k] x [k, n] (b given transposed, as linear's weight is) in `precision`: as
// many products as fill about half a second after two warm-up ones, in one timed run. With `cached_weight`, the
// bf16 product reads the weight already rounded, as linear does with a parameter (autocast::cached_bf16_weight).
double gemm_rate(int64_t m, int64_t n, int64_t k, DType precision, bool cached_weight, Generator& gen) {
  const AutocastGuard autocast(precision);
  const Tensor a = randn({m, k}, gen), c = empty({m, n});
  Tensor weight = randn({n, k}, gen);
  if (cached_weight && precision == DType::bf16) weight = gemm::rounded_to_bf16(weight);
  const gemm::Matrix ma = gemm::matrix_of(a), mc = gemm::matrix_of(c);
  const gemm::Matrix mb = gemm::matrix_of(transpose(weight, 0, 1));
  const gemm::ProductOptions product{.precision = autocast::product_precision(Op::linear, DType::f32, ma, mb, mc)};
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 2; ++i) gemm::multiply(DType::f32, 1, ma, mb, mc, product);
  const int reps = std::max(3, static_cast<int>(0.25 / std::max(seconds_since(start), 1e-6)));
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) gemm::multiply(DType::f32, 1, ma, mb, mc, product);
  return 2.0 * static_cast<double>(m * n * k) * reps / seconds_since(start) / 1e9;
}

// The forward products of a training step of `c` (backward's have the same sizes, transposed): the feed-forward
// pair, a projection, the output projection. Then a greedy decoding step's, one row per sequence: the fused
// query/key/value projection, the feed-forward pair, the output projection, on weights whose rounding is cached.
void print_peak(const std::string& name, const Config& c) {
  const int64_t tokens = c.batch * c.tgt_len;
  const std::vector<std::array<int64_t, 3>> training{
      {tokens, c.ff, c.d}, {tokens, c.d, c.ff}, {tokens, c.d, c.d}, {tokens, c.vocab, c.d}};
  const std::vector<std::array<int64_t, 3>> decoding{
      {c.batch, 3 * c.d, c.d}, {c.batch, c.ff, c.d}, {c.batch, c.d, c.ff}, {c.batch, c.vocab, c.d}};
  Generator gen(0);
  for (const auto& [label, shapes, cached_weight] :
       {std::tuple{"peak", training, false}, std::tuple{"peak-decode", decoding, true}}) {
    for (const auto& [m, n, k] : shapes) {
      const double f32 = gemm_rate(m, n, k, DType::f32, cached_weight, gen);
      const double bf16 = gemm_rate(m, n, k, DType::bf16, cached_weight, gen);
      fmt::print("{} {} m={} n={} k={} f32_gflops={:.1f} bf16_gflops={:.1f} ratio={:.2f}\n", label, name, m, n, k,
                 f32, bf16, bf16 / f32);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  use_openblas_kernels_for_this_cpu(argv);
  CLI::App app{"Time the reference Transformer training step and greedy decoding"};
  std::string name = "toy";
  int threads = 2, steps = 0;
  DType precision = DType::f32;
  bool peak = false;
  app.add_option("--config", name, "toy, small or base")->check(CLI::IsMember({"toy", "small", "base"}))->capture_default_str();
  app.add_option("--threads", threads, "Threads (0: all cores)")->check(cli::thread_count())->capture_default_str();
  app.add_option("--steps", steps, "Timed training steps (0: the reference's count)")->check(cli::integer_at_least(0));
  nn::GradientReducerOptions allreduce;
  bool no_overlap = false;
  app.add_option("--bucket-mb", allreduce.bucket_mb, "mpirun: MiB of gradients per allreduce bucket")
      ->check(cli::number_between(0, 4096, cli::Bounds::open_low))
      ->capture_default_str();
  app.add_flag("--no-overlap", no_overlap, "mpirun: allreduce after backward instead of during it");
  cli::add_precision_option(app, precision);
  app.add_flag("--peak", peak, "Print the f32 and bf16 GEMM rates on this config's products instead");
  if (const int code = cli::parse(app, "gradformer-bench", argc, argv); code >= 0) return code;
  const nn::Distributed& distributed = nn::Distributed::world();
  allreduce.overlap = !no_overlap;
  set_num_threads(threads);
  const Config c = kConfigs.at(name);
  if (peak) {
    print_peak(name, c);
    return 0;
  }
  const AutocastGuard autocast(precision);
  steps = steps > 0 ? steps : c.steps;

  Generator gen(0);
  nn::Embedding source_embedding(c.vocab, c.d, -1, gen), target_embedding(c.vocab, c.d, -1, gen);
  nn::Transformer transformer(
      {.layer = {.d_model = c.d, .nhead = c.heads, .dim_feedforward = c.ff, .dropout = 0.1},
       .num_encoder_layers = c.layers,
       .num_decoder_layers = c.layers},
      gen);
  nn::Linear output(c.d, c.vocab, true, gen);
  std::vector<Tensor> params;
  for (const nn::Module* m : std::initializer_list<const nn::Module*>{&source_embedding, &target_embedding, &transformer, &output})
    for (const Tensor& p : m->parameters()) params.push_back(p);
  const nn::FlatParameters flat(params);
  distributed.broadcast_parameters(flat);
  nn::GradientReducer reducer(distributed, flat, allreduce);
  optim::AdamOptions adam;
  adam.lr = 1e-4;
  adam.beta1 = 0.9;
  adam.beta2 = 0.98;
  adam.eps = 1e-9;
  optim::Adam optimizer(params, adam);
  CrossEntropyOptions loss_options;
  loss_options.label_smoothing = 0.1;
  const Tensor src = random_tokens(gen, c.batch, c.src_len, c.vocab);
  const Tensor tgt = random_tokens(gen, c.batch, c.tgt_len + 1, c.vocab);
  const Tensor tgt_in = slice(tgt, 1, 0, c.tgt_len), tgt_out = slice(tgt, 1, 1, c.tgt_len + 1).contiguous();
  const double scale = std::sqrt(static_cast<double>(c.d));
  // This rank's rows of the batch; every row has the same number of target tokens, so its loss weighs rows/batch.
  const int64_t first_row = c.batch * distributed.rank() / distributed.size();
  const int64_t last_row = c.batch * (distributed.rank() + 1) / distributed.size();
  const Tensor my_src = slice(src, 0, first_row, last_row).contiguous();
  const Tensor my_tgt_in = slice(tgt_in, 0, first_row, last_row).contiguous();
  const Tensor my_tgt_out = slice(tgt_out, 0, first_row, last_row).contiguous();
  const double weight = static_cast<double>(last_row - first_row) / static_cast<double>(c.batch);
  double allreduce_seconds = 0;

  auto train_step = [&] {
    optimizer.zero_grad();
    const Tensor y = transformer.forward(source_embedding.forward(my_src) * scale, target_embedding.forward(my_tgt_in) * scale);
    const Tensor loss = cross_entropy(reshape(output.forward(y), {-1, c.vocab}), reshape(my_tgt_out, {-1}), loss_options);
    reducer.arm();
    (weight == 1.0 ? loss : loss * weight).backward();
    const auto reduce_start = std::chrono::steady_clock::now();
    reducer.finish();
    allreduce_seconds += seconds_since(reduce_start);
    optimizer.step();
  };
  for (int i = 0; i < 2; ++i) train_step();
  allreduce_seconds = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) train_step();
  const double step_seconds = seconds_since(start) / steps;
  if (!distributed.is_root()) return 0;
  fmt::print("train {} step_ms={:.1f} tgt_tok_per_s={:.0f} gflops={:.1f}\n", name, step_seconds * 1e3,
             static_cast<double>(c.batch * c.tgt_len) / step_seconds, train_flops(c) / step_seconds / 1e9);
  if (distributed.size() > 1)
    fmt::print("allreduce {} ranks={} threads={} ms_per_step={:.1f} mbytes={:.1f} buckets={} overlap={} "
               "started_in_backward={}\n", name, distributed.size(), threads, allreduce_seconds / steps * 1e3,
               static_cast<double>(flat.numel() * static_cast<int64_t>(dtype_size(flat.dtype()))) / 1e6,
               reducer.buckets().size(), allreduce.overlap ? "yes" : "no", reducer.started_during_backward());

  // Greedy decoding of the batch to tgt_len tokens with the key/value cache; one warm-up, median of three.
  source_embedding.eval();
  target_embedding.eval();
  transformer.eval();
  output.eval();
  auto decode = [&] {
    NoGradGuard no_grad;
    const Tensor memory = transformer.encode(source_embedding.forward(src) * scale);
    nn::DecoderCache cache;
    cache.layers.resize(static_cast<size_t>(c.layers));
    Tensor last = zeros({c.batch, 1}, DType::i64);
    for (int64_t t = 0; t < c.tgt_len; ++t) {
      nn::DecodeMasks masks;
      const Tensor y = transformer.decode(target_embedding.forward(last) * scale, memory, masks, &cache);  // (B, 1, D)
      last = argmax(output.forward(y), -1);  // (B, 1)
    }
  };
  decode();
  std::vector<double> times;
  for (int i = 0; i < 3; ++i) {
    start = std::chrono::steady_clock::now();
    decode();
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  fmt::print("decode {} ms={:.1f} tok_per_s={:.0f}\n", name, times[1] * 1e3,
             static_cast<double>(c.batch * c.tgt_len) / times[1]);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  // tensors_peak_mb: the most bytes tensors held at once (the caching allocator's peak), the part of the
  // resident set that the model's parameters, optimizer state and activations make up.
  fmt::print("memory {} max_rss_mb={:.1f} tensors_peak_mb={:.1f}\n", name, static_cast<double>(usage.ru_maxrss) / 1024.0,
             static_cast<double>(storage_cache_stats().peak_bytes) / (1024.0 * 1024.0));
  fmt::print("kernels openblas={}\n", openblas_kernels_in_use());
  return 0;
}
