// The exceptions gradformer throws. Every one derives from gradformer::Error, and every message starts with
// the op, layer or file it concerns and names the shapes or values involved, e.g.
//   "matmul: [32, 64] x [48, 16]: inner dimensions 64 and 48 differ".
// Not for internal invariants of our own code: those are bugs, not user errors.
#pragma once

#include "autograd/op.h"

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace gradformer {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ShapeError : public Error { using Error::Error; };       // shapes that do not fit together
class DTypeError : public Error { using Error::Error; };       // a dtype the op does not take, or mixed dtypes
class IndexError : public Error { using Error::Error; };       // an index or axis out of range
class ValueError : public Error { using Error::Error; };       // a bad argument value (eps <= 0, p outside [0, 1), ...)
class AutogradError : public Error { using Error::Error; };    // misuse of the engine (freed graph, missing gradient)
class NumericalError : public Error { using Error::Error; };   // NaN or Inf found by anomaly detection
class FormatError : public Error { using Error::Error; };      // a malformed file: checkpoint, vocabulary, corpus
class IOError : public Error { using Error::Error; };          // a file that cannot be opened, read or written

// Throws E with a message formatted as "<where>: <what>", where is the op, layer or file name.
template <class E = Error, class... Args>
[[noreturn]] void fail(std::string_view where, fmt::format_string<Args...> what, Args&&... args) {
  throw E(fmt::format("{}: {}", where, fmt::format(what, std::forward<Args>(args)...)));
}

// The same for a library op, named from its one list (autograd/op.h): `fail<ShapeError>(Op::concat, ...)`.
template <class E = Error, class... Args>
[[noreturn]] void fail(Op op, fmt::format_string<Args...> what, Args&&... args) {
  fail<E>(op_name(op), what, std::forward<Args>(args)...);
}

}  // namespace gradformer
