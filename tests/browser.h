// A real browser for the tests of the HTML pages (test_html_report.cpp): Debian's chromium, headless, driven over
// the DevTools protocol on a pipe (--remote-debugging-pipe: it reads commands from its descriptor 3 and writes
// answers and events to its descriptor 4, each a JSON message ended by a NUL byte), which is how Playwright and
// Puppeteer drive it too. No node, no npm, no port: nothing that a fresh Debian with `chromium` lacks.
// Every page load records what went wrong in the page: console errors, uncaught exceptions, failed loads, and any
// request other than the page's own file (the pages must fetch nothing).
#pragma once

#include <nlohmann/json.hpp>

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace gradformer::testing {

// The chromium to drive: $GRADFORMER_CHROMIUM, else /usr/bin/chromium; empty when neither is executable.
std::string chromium_path();

class Browser {
 public:
  // Starts chromium headless with a fresh profile in a temporary directory. Throws std::runtime_error (with the
  // browser's last output lines) if it does not answer.
  Browser();
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Opens a new tab of width x height CSS pixels on file://path and waits for its load event.
  void open(const std::string& path, int width = 1200, int height = 900);
  // Evaluates a JavaScript expression in the open tab (promises awaited) and returns its value as JSON; an
  // exception thrown by the expression throws std::runtime_error.
  nlohmann::json evaluate(const std::string& expression);
  // Real input events at page coordinates, as a user's mouse makes them.
  void move_mouse(double x, double y);
  void click(double x, double y);
  // The visible tab as PNG bytes.
  std::string screenshot_png();
  // What the PNG shows, decoded by the browser's own image decoder on a blank tab of its own:
  // {width, height, non_white (pixels), colours (distinct RGB values, at most 4096 counted)}.
  nlohmann::json png_statistics(const std::string& png);
  // What went wrong in the tabs opened so far, one line each.
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  nlohmann::json call(const std::string& method, const nlohmann::json& params = nlohmann::json::object(),
                      bool in_tab = true);
  // The next message from the browser; events are noted on the way.
  nlohmann::json receive();
  void note(const nlohmann::json& event);
  void wait_for_event(const std::string& method);
  [[noreturn]] void fail(const std::string& what) const;

  std::string profile_dir_;
  pid_t pid_ = -1;
  int to_browser_ = -1, from_browser_ = -1;
  std::string pending_;  // bytes received after the last complete message
  std::vector<nlohmann::json> events_;  // received while waiting for an answer, not yet consumed
  int64_t next_id_ = 1;
  std::string session_;  // the open tab's
  std::string page_url_;
  std::vector<std::string> problems_;
  std::chrono::seconds timeout_{120};  // per answer: the cores are shared, and chromium starts slowly there
};

}  // namespace gradformer::testing
