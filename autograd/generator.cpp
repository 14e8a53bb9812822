#include "autograd/generator.h"

#include <cmath>
#include <numbers>

namespace gradformer {
namespace {

uint64_t splitmix64(uint64_t& x) { return splitmix64_output(x += kSplitmix64Gamma); }

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

// Null while no GeneratorGuard is alive on this thread.
thread_local Generator* guarded_generator = nullptr;

}  // namespace

void Generator::manual_seed(uint64_t seed) {
  state_ = State{};
  for (auto& word : state_.words) word = splitmix64(seed);
}

uint64_t Generator::next_u64() {
  auto& s = state_.words;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

double Generator::uniform(double low, double high) { return low + (high - low) * uniform(); }

double Generator::normal(double mean, double stddev) {
  if (state_.has_spare_normal) {
    state_.has_spare_normal = false;
    return mean + stddev * state_.spare_normal;
  }
  // 1 - uniform() lies in (0, 1], so the logarithm is finite.
  const double radius = std::sqrt(-2.0 * std::log(1.0 - uniform()));
  const double angle = 2.0 * std::numbers::pi * uniform();
  state_.spare_normal = radius * std::sin(angle);
  state_.has_spare_normal = true;
  return mean + stddev * radius * std::cos(angle);
}

uint64_t Generator::below(uint64_t bound) {
  // Rejection sampling: draws past the largest multiple of bound would favour small results.
  const uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t draw;
  do draw = next_u64();
  while (draw >= limit);
  return draw % bound;
}

Generator& default_generator() {
  static Generator generator(0);
  return generator;
}

Generator& current_generator() { return guarded_generator ? *guarded_generator : default_generator(); }

GeneratorGuard::GeneratorGuard(Generator& generator) : previous_(guarded_generator) { guarded_generator = &generator; }

GeneratorGuard::~GeneratorGuard() { guarded_generator = previous_; }

}  // namespace gradformer
