// Splitting UTF-8 text into code points without throwing: each well-formed sequence is one unit and every
// byte that does not start one (a stray continuation byte, a truncated or overlong sequence) is a unit of its
// own, so arbitrary bytes round-trip exactly; and the check whether text is UTF-8 at all. Not a Unicode library:
// no normalisation, no case mapping.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace gradformer::data {

// Length in bytes of the code point starting at text[pos]: 1..4, or 1 for a byte that starts no valid sequence.
inline size_t utf8_unit_length(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(pos);
  size_t length = 1;
  unsigned min_value = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, min_value = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, min_value = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, min_value = 0x10000;
  } else {
    return 1;
  }
  if (pos + length > text.size()) return 1;
  unsigned value = lead & (0x7F >> length);
  for (size_t i = 1; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 1;
    value = (value << 6) | (byte(pos + i) & 0x3F);
  }
  // Overlong forms, UTF-16 surrogates and values past U+10FFFF are not code points a decoder would accept.
  if (value < min_value || (value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) return 1;
  return length;
}

// The offset of the first byte that starts no well-formed UTF-8 sequence, or npos when the text is valid UTF-8.
inline size_t first_invalid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = utf8_unit_length(text, pos);
    if (length == 1 && static_cast<unsigned char>(text[pos]) >= 0x80) return pos;
    pos += length;
  }
  return std::string_view::npos;
}

inline bool is_valid_utf8(std::string_view text) { return first_invalid_utf8(text) == std::string_view::npos; }

inline std::vector<std::string_view> utf8_units(std::string_view text) {
  std::vector<std::string_view> units;
  units.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t length = utf8_unit_length(text, pos);
    units.push_back(text.substr(pos, length));
    pos += length;
  }
  return units;
}

// Whether the unit is whitespace by Python's str.isspace(), which decides where sacreBLEU's split() cuts.
inline bool is_python_space(std::string_view unit) {
  if (unit.size() == 1) {
    const unsigned char c = static_cast<unsigned char>(unit[0]);
    return c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  }
  return unit == "\u0085" || unit == "\u00A0" || unit == "\u1680" || unit == "\u2028" || unit == "\u2029" ||
         unit == "\u202F" || unit == "\u205F" || unit == "\u3000" ||
         (unit.size() == 3 && unit[0] == '\xE2' && unit[1] == '\x80' && static_cast<unsigned char>(unit[2]) <= 0x8A);
}

}  // namespace gradformer::data
