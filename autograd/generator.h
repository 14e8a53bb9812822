// A seedable random number generator with the same stream on every machine: xoshiro256** seeded through
// splitmix64, uniform floats from the top bits, normals by Box-Muller. Not std::mt19937 +
// std::normal_distribution, whose outputs differ between standard libraries.
// Its whole state is four words plus a cached normal, so checkpoints can save and restore it exactly.
//
// Who draws from which generator (PyTorch's rule): no module keeps a generator. Everything random at forward
// time (dropout, attention dropout) draws from current_generator(), the generator of the calling thread: the
// default generator unless a GeneratorGuard has installed another for a scope. Initialisation draws once, at
// construction, from the generator a constructor is given (current_generator() when none), and never again.
#pragma once

#include <array>
#include <cstdint>

namespace gradformer {

// splitmix64 (Steele, Lea, Flood 2014): its state advances by kSplitmix64Gamma, and its output function scrambles
// a state into a word. Outputs for consecutive states pass BigCrush, which is why Generator seeds through it and why
// the dropout mask (ops/dropout_mask.h) can use it as a counter-based generator: word c of a stream with key k is
// splitmix64_output(k + (c + 1) · gamma), computable for any c without the words before it.
inline constexpr uint64_t kSplitmix64Gamma = 0x9e3779b97f4a7c15ULL;

constexpr uint64_t splitmix64_output(uint64_t state) {
  state = (state ^ (state >> 30)) * 0xbf58476d1ce4e5b9ULL;
  state = (state ^ (state >> 27)) * 0x94d049bb133111ebULL;
  return state ^ (state >> 31);
}

class Generator {
 public:
  struct State {
    std::array<uint64_t, 4> words{};
    bool has_spare_normal = false;
    double spare_normal = 0.0;
    bool operator==(const State&) const = default;
  };

  explicit Generator(uint64_t seed = 0) { manual_seed(seed); }

  void manual_seed(uint64_t seed);
  uint64_t next_u64();
  double uniform();                        // [0, 1), 53 random bits
  double uniform(double low, double high);  // [low, high)
  double normal(double mean = 0.0, double stddev = 1.0);
  uint64_t below(uint64_t bound);           // uniform integer in [0, bound), bound > 0, without modulo bias

  State state() const { return state_; }
  void set_state(const State& state) { state_ = state; }

 private:
  State state_;
};

// The process-wide generator: the current one on every thread that has no GeneratorGuard.
Generator& default_generator();

// This thread's innermost GeneratorGuard's generator, else default_generator().
Generator& current_generator();

// Makes `generator` this thread's current generator until the guard's scope ends, then restores the previous
// one (guards nest). The generator must outlive the guard; other threads keep theirs.
class GeneratorGuard {
 public:
  explicit GeneratorGuard(Generator& generator);
  ~GeneratorGuard();
  GeneratorGuard(const GeneratorGuard&) = delete;
  GeneratorGuard& operator=(const GeneratorGuard&) = delete;

 private:
  Generator* previous_;
};

}  // namespace gradformer
