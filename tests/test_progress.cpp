// The progress line of gradformer-train and gradformer-translate: the bar's width and clamping, the time-left
// text, the erase to the end of a redrawn line, the stream progress as a terminal would receive it, and both
// programs with their output on a pseudo-terminal.
#include "models/progress.h"

#include "autograd/error.h"
#include "tests/helpers.h"
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

using namespace gradformer;
using namespace gradformer::models;

namespace {

// What a StreamProgress wrote to its stream, fed `steps` advances of `items`.
std::string drawn(std::optional<size_t> total, size_t steps, size_t items, size_t min_items) {
  std::FILE* file = std::tmpfile();
  REQUIRE(file != nullptr);
  {
    StreamProgress progress(file, total, "sentences", min_items);
    for (size_t i = 0; i < steps; ++i) progress.advance(items);
  }
  std::string out(static_cast<size_t>(std::ftell(file)), '\0');
  std::rewind(file);
  CHECK(std::fread(out.data(), 1, out.size(), file) == out.size());
  std::fclose(file);
  return out;
}

}  // namespace

TEST_CASE("progress_bar: the width holds whatever the fraction, which is clamped to [0, 1]") {
  CHECK(progress_bar(0.5, 10) == "[#####     ]  50%");
  CHECK(progress_bar(0.0, 4) == "[    ]   0%");
  CHECK(progress_bar(1.0, 4) == "[####] 100%");
  CHECK(progress_bar(1.7, 4) == "[####] 100%");
  CHECK(progress_bar(-0.3, 4) == "[    ]   0%");
  CHECK(progress_bar(NAN, 4) == "[    ]   0%");
  CHECK(progress_bar(0.999, 10) == "[######### ]  99%");  // never shows done before it is
  for (const double fraction : {0.0, 0.13, 0.5, 0.99, 1.0, 3.0}) CHECK(progress_bar(fraction, 20).size() == 27);
}

TEST_CASE("format_eta: seconds, minutes and hours as a person reads them; unknown as ?") {
  CHECK(format_eta(0) == "0s");
  CHECK(format_eta(47.4) == "47s");
  CHECK(format_eta(60) == "1m00s");
  CHECK(format_eta(185) == "3m05s");
  CHECK(format_eta(7440) == "2h04m");
  CHECK(format_eta(-1) == "?");
  CHECK(format_eta(INFINITY) == "?");
  CHECK(format_eta(NAN) == "?");
}

TEST_CASE("redraw_line: a carriage return, the text, and an erase to the end of the line") {
  // Without the erase, "eta 47s" drawn over "eta 100s" would read "eta 47ss".
  CHECK(redraw_line("eta 47s") == "\reta 47s\x1b[K");
}

TEST_CASE("StreamProgress: a bar with the time left for a known total, a counter otherwise, each line redrawn") {
  const std::string bar = drawn(400, 4, 100, 300);
  CHECK(bar.find("\r[#####               ]  25% 100/400 sentences eta ") == 0);
  CHECK(bar.find("\r[####################] 100% 400/400 sentences eta 0s\x1b[K\n") != std::string::npos);
  const std::string counter = drawn(std::nullopt, 4, 100, 300);
  // Unknown total: nothing until the count reaches the threshold, then the count.
  CHECK(counter == "\r300 sentences\x1b[K\r400 sentences\x1b[K\n");
}

TEST_CASE("StreamProgress: a short input, or no terminal, draws nothing") {
  CHECK(drawn(200, 2, 100, 300).empty());
  CHECK(drawn(std::nullopt, 2, 100, 300).empty());
  StreamProgress no_terminal(nullptr, 1000, "sentences");
  no_terminal.advance(1000);  // must not touch a stream
}

TEST_CASE("count_lines: newline-terminated lines, a last line without one, and an unreadable file") {
  const testing::TempDir dir;
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir.str(name), std::ios::binary) << text;
    return dir.str(name);
  };
  CHECK(count_lines(write("empty", "")) == 0);
  CHECK(count_lines(write("three", "a\n\nc\n")) == 3);
  CHECK(count_lines(write("open", "a\nb")) == 2);
  CHECK_THROWS_AS(count_lines(dir.str("missing")), IOError);
  CHECK(count_lines("/dev/null") == std::nullopt);  // a device: counting would consume a pipe
}

namespace {

// Runs examples/<program> with `args`, stdin from /dev/null, its descriptor `terminal_fd` (1 or 2) on a
// pseudo-terminal and the other on /dev/null; returns the exit code and what the terminal received. The output
// must fit the terminal's buffer (a few KB), since it is read once the program has ended.
std::pair<int, std::string> run_on_terminal(const std::string& program, const std::vector<std::string>& args,
                                            int terminal_fd) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(grantpt(master) == 0);
  REQUIRE(unlockpt(master) == 0);
  const std::string terminal = ptsname(master);
  const int held = ::open(terminal.c_str(), O_RDWR | O_NOCTTY);  // keeps the output readable after the exit
  REQUIRE(held >= 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, terminal_fd, terminal.c_str(), O_WRONLY | O_NOCTTY, 0);
  posix_spawn_file_actions_addopen(&actions, 3 - terminal_fd, "/dev/null", O_WRONLY, 0);
  const pid_t pid = testing::spawn_program(program, args, actions);
  int status = 0;
  waitpid(pid, &status, 0);
  ::close(held);
  std::string received;
  std::array<char, 4096> buffer;
  for (ssize_t got; (got = ::read(master, buffer.data(), buffer.size())) > 0;) received.append(buffer.data(), got);
  ::close(master);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, received};
}

}  // namespace

TEST_CASE("programs on a terminal: gradformer-train redraws one cleared line with a bar; translate a bar on stderr") {
  if (!testing::kProgramsBuilt) return;
  const testing::TempDir dir;
  testing::write_file(dir.str("corpus.tsv"), testing::small_corpus());
  const auto [train_code, train_screen] =
      run_on_terminal("gradformer-train", testing::quick_train(dir.str("corpus.tsv"), dir.str("run")), 1);
  CHECK(train_code == 0);
  CAPTURE(train_screen);
  CHECK(train_screen.find("\r[##########          ]  50% step 1 loss ") != std::string::npos);
  CHECK(train_screen.find("\r[####################] 100% step 2 loss ") != std::string::npos);
  CHECK(train_screen.find("eta 0s\x1b[K") != std::string::npos);
  CHECK(train_screen.find("epoch") == std::string::npos);  // not the log lines a file gets

  std::string many, few;
  for (int i = 0; i < 400; ++i) (i < 10 ? few : many) += "a b c\n";
  many += few;
  testing::write_file(dir.str("many.txt"), many);
  testing::write_file(dir.str("few.txt"), few);
  using testing::operator+;
  const std::vector<std::string> translate{"--checkpoint", dir.str("run/last.safetensors"), "--max-length", "4",
                                           "--output", dir.str("out.txt"), "--input"};
  const auto [many_code, many_screen] =
      run_on_terminal("gradformer-translate", translate + std::vector{dir.str("many.txt")}, 2);
  CHECK(many_code == 0);
  CHECK(many_screen.find("] 100% 400/400 sentences eta 0s\x1b[K") != std::string::npos);
  const auto [few_code, few_screen] =
      run_on_terminal("gradformer-translate", translate + std::vector{dir.str("few.txt")}, 2);
  CHECK(few_code == 0);
  CHECK(few_screen.empty());
}
