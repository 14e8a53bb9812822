#include "models/progress.h"

#include "autograd/error.h"

#include <fmt/core.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

namespace gradformer::models {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string progress_bar(double fraction, size_t width) {
  const double done = std::isnan(fraction) ? 0.0 : std::clamp(fraction, 0.0, 1.0);
  const auto filled = static_cast<size_t>(std::floor(done * static_cast<double>(width)));
  return fmt::format("[{}{}] {:3.0f}%", std::string(filled, '#'), std::string(width - filled, ' '),
                     std::floor(done * 100));
}

std::string format_eta(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto total = static_cast<int64_t>(std::llround(seconds));
  if (total < 60) return fmt::format("{}s", total);
  if (total < 3600) return fmt::format("{}m{:02}s", total / 60, total % 60);
  return fmt::format("{}h{:02}m", total / 3600, total % 3600 / 60);
}

std::string redraw_line(const std::string& text) { return "\r" + text + "\x1b[K"; }

StreamProgress::StreamProgress(std::FILE* terminal, std::optional<size_t> total, std::string unit, size_t min_items)
    : terminal_(terminal), total_(total), unit_(std::move(unit)), min_items_(min_items), started_(now_seconds()) {}

StreamProgress::~StreamProgress() { end(); }

void StreamProgress::end() {
  if (drawn_) std::fputs("\n", terminal_);
  drawn_ = false;
}

void StreamProgress::advance(size_t items) {
  done_ += items;
  if (terminal_ == nullptr || (total_ ? *total_ : done_) < min_items_) return;
  std::string text;
  if (total_ && *total_ > 0) {
    const double fraction = static_cast<double>(done_) / static_cast<double>(*total_);
    const double elapsed = now_seconds() - started_;
    text = fmt::format("{} {}/{} {} eta {}", progress_bar(fraction), done_, *total_, unit_,
                       format_eta(done_ > 0 ? elapsed * (1 / fraction - 1) : NAN));
  } else {
    text = fmt::format("{} {}", done_, unit_);
  }
  std::fputs(redraw_line(text).c_str(), terminal_);
  std::fflush(terminal_);
  drawn_ = true;
}

std::optional<size_t> count_lines(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) fail<IOError>(path, "cannot open: {}", std::strerror(errno));
  struct stat info {};
  if (::fstat(::fileno(file), &info) != 0 || !S_ISREG(info.st_mode)) {
    std::fclose(file);
    return std::nullopt;
  }
  size_t lines = 0;
  bool open_line = false;  // the last byte read was not a newline
  std::array<char, 1 << 16> buffer;
  for (size_t got; (got = std::fread(buffer.data(), 1, buffer.size(), file)) > 0;) {
    lines += static_cast<size_t>(std::count(buffer.data(), buffer.data() + got, '\n'));
    open_line = buffer[got - 1] != '\n';
  }
  const bool failed = std::ferror(file) != 0;
  std::fclose(file);
  if (failed) fail<IOError>(path, "read failed");
  return lines + (open_line ? 1 : 0);
}

}  // namespace gradformer::models
