// Progress for a person watching a terminal: one line redrawn in place, with a bar for the fraction done and the
// time left. gradformer-train draws its steps with it and gradformer-translate its sentences; where the output is
// not a terminal, the programs print log lines instead and nothing here is used.
#pragma once

#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>

namespace gradformer::models {

// A bar of `width` cells and the percentage, the fraction clamped to [0, 1] (NaN counts as 0): "[#####     ]  50%".
std::string progress_bar(double fraction, size_t width = 20);
// Time left as a person reads it: "47s", "3m05s", "2h04m"; "?" when unknown (negative or not finite).
std::string format_eta(double seconds);
// What replaces the terminal's current line with `text`: a carriage return, the text, and an erase to the end of
// the line, so that a shorter line leaves nothing of a longer one behind.
std::string redraw_line(const std::string& text);

// The progress of a stream of items (gradformer-translate's sentences) on `terminal`, null to draw nothing: a bar
// and the time left when the total is known, a counter otherwise. Short streams are not worth a line: nothing is
// drawn while the total (when known) or the count is below `min_items`. end() (or the destructor) ends a drawn
// line, before anything else is printed.
class StreamProgress {
 public:
  StreamProgress(std::FILE* terminal, std::optional<size_t> total, std::string unit, size_t min_items = 300);
  ~StreamProgress();
  StreamProgress(const StreamProgress&) = delete;
  StreamProgress& operator=(const StreamProgress&) = delete;
  void advance(size_t items);
  void end();

 private:
  std::FILE* terminal_;
  std::optional<size_t> total_;
  std::string unit_;
  size_t min_items_, done_ = 0;
  double started_;  // seconds on a steady clock
  bool drawn_ = false;
};

// The number of lines of a regular file (a last line without a newline counts), for a StreamProgress total;
// nullopt for anything else (a pipe, a device), which counting would consume. Throws IOError naming the file
// when it cannot be read.
std::optional<size_t> count_lines(const std::string& path);

}  // namespace gradformer::models
