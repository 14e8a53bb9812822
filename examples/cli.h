// What every gradformer program does with its command line and its errors, so that they all fail alike: one line
// "gradformer-xxx: error: <what>" on stderr, exit 2 for a bad command line and 1 for anything that goes wrong
// afterwards; and flag checks whose messages say what was expected and what came. Not library code: the
// library throws (autograd/error.h), the programs report.
#pragma once

#include "autograd/tensor.h"

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

namespace gradformer::cli {

// One line, whatever the message holds: a stray newline would split the report a script greps for.
inline void print_error(std::string_view program, std::string message) {
  for (char& c : message)
    if (c == '\n' || c == '\r') c = ' ';
  fmt::print(stderr, "{}: error: {}\n", program, message);
}

inline void print_warning(std::string_view program, std::string_view message) {
  fmt::print(stderr, "{}: warning: {}\n", program, message);
}

// Parses the command line. Returns -1 when the program should go on; otherwise the exit code: 0 after --help or
// --version, 2 after printing the parse error as one line.
inline int parse(CLI::App& app, std::string_view program, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    print_error(program, fmt::format("{} (see --help)", e.what()));
    return 2;
  }
  return -1;
}

// An integer flag that must be at least `minimum`. Checked on the text, before CLI11 converts it: an unsigned
// option would otherwise take "-1" as 2^64 - 1.
inline CLI::Validator integer_at_least(int64_t minimum) {
  return CLI::Validator(
      [minimum](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno == ERANGE || value < minimum)
          return fmt::format("expected an integer >= {}, got '{}'", minimum, input);
        return {};
      },
      fmt::format("INT>={}", minimum));
}

// An integer flag in [low, high], checked on the text as integer_at_least is.
inline CLI::Validator integer_between(int64_t low, int64_t high) {
  return CLI::Validator(
      [low, high](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno == ERANGE || value < low || value > high)
          return fmt::format("expected an integer in [{}, {}], got '{}'", low, high, input);
        return {};
      },
      fmt::format("INT in [{}, {}]", low, high));
}

// A 64-bit seed: 0 to 2^64 - 1, digits only. CLI11 alone would take "-1" as 2^64 - 1 and clamp what is too large.
inline CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const bool digits = !input.empty() && std::all_of(input.begin(), input.end(), [](char c) {
          return c >= '0' && c <= '9';
        });
        if (digits) std::strtoull(input.c_str(), &end, 10);
        if (!digits || *end != '\0' || errno == ERANGE)
          return fmt::format("expected an integer in [0, 18446744073709551615], got '{}'", input);
        return {};
      },
      "INT in [0, 2^64-1]");
}

// --threads: 0 (all cores) up to four times the cores. More only thrashes, and past 32767 libgomp fails with its
// own message or crashes, so the bound is checked here with the flag's name.
inline CLI::Validator thread_count() {
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t most = 4 * cores;
  return CLI::Validator(
      [cores, most](std::string& input) -> std::string {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(input.c_str(), &end, 10);
        if (input.empty() || *end != '\0' || errno == ERANGE || value < 0 || value > most)
          return fmt::format("expected an integer in [0, {}] (0: all cores; at most 4 x the {} cores), got '{}'", most,
                             cores, input);
        return {};
      },
      fmt::format("INT in [0, {}]", most));
}

// --precision f32|bf16: what the program runs its products in under AutocastGuard (ops/autocast.h).
inline CLI::Option* add_precision_option(CLI::App& app, DType& precision) {
  return app
      .add_option_function<std::string>(
          "--precision", [&precision](const std::string& name) { precision = name == "bf16" ? DType::bf16 : DType::f32; },
          "f32, or bf16: mixed precision, matrix products in bf16 with f32 accumulation, weights and the rest in f32 "
          "(PyTorch's CPU autocast)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->default_str("f32");
}

// Whether the whole of input is a finite number; strtod alone would take "1x" as 1 and "nan" as a number.
inline bool parse_finite(const std::string& input, double& value) {
  char* end = nullptr;
  value = std::strtod(input.c_str(), &end);
  return !input.empty() && *end == '\0' && std::isfinite(value);
}

// Which ends of number_between's range are excluded.
enum class Bounds { closed, open_low, open_high };

// A finite number in [low, high], (low, high] or [low, high).
inline CLI::Validator number_between(double low, double high, Bounds bounds = Bounds::closed) {
  const bool open_low = bounds == Bounds::open_low, open_high = bounds == Bounds::open_high;
  const std::string range = fmt::format("{}{}, {}{}", open_low ? "(" : "[", low, high, open_high ? ")" : "]");
  return CLI::Validator(
      [=](std::string& input) -> std::string {
        double value = 0;
        if (!parse_finite(input, value) || value < low || value > high || (open_low && value == low) ||
            (open_high && value == high))
          return fmt::format("expected a number in {}, got '{}'", range, input);
        return {};
      },
      "NUMBER in " + range);
}

// A finite number >= low.
inline CLI::Validator number_at_least(double low) {
  return CLI::Validator(
      [low](std::string& input) -> std::string {
        double value = 0;
        if (!parse_finite(input, value) || value < low)
          return fmt::format("expected a finite number >= {}, got '{}'", low, input);
        return {};
      },
      fmt::format("NUMBER>={}", low));
}

}  // namespace gradformer::cli
