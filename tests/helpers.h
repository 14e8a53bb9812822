// Small helpers shared by the test suites.
#pragma once

#include "autograd/tensor.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace gradformer::testing {

// Whether this is the AddressSanitizer build of `./run.sh test` (gcc defines __SANITIZE_ADDRESS__), where a
// test that runs long shrinks and one that measures memory skips that part, saying why.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitizerBuild = true;
#else
inline constexpr bool kSanitizerBuild = false;
#endif

// The message of the E that f throws, or "(no exception)": tests compare it with the exact expected text.
template <class E, class F>
std::string message_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no exception)";
}

inline double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

inline double max_abs_difference(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace gradformer::testing
