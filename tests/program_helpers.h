// Running the built programs as a user runs them, for the program suites (test_programs.cpp,
// test_programs_translate.cpp): each program is spawned with its stdin, stdout and stderr on files, and the caller
// checks the exit status and what it printed. Programs come from GRADFORMER_PROGRAMS (tests/meson.build); a build
// without examples (run.sh's sanitizer build) skips these suites.
#pragma once

#include "tests/helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace gradformer::testing {

#ifdef GRADFORMER_PROGRAMS
inline constexpr bool kProgramsBuilt = true;
inline const std::string kPrograms = GRADFORMER_PROGRAMS;
#else
inline constexpr bool kProgramsBuilt = false;
inline const std::string kPrograms;
#endif

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

struct Outcome {
  int exit_code = -1;  // -1: did not exit normally (a crash)
  std::string out, err;
};

// The command line that runs examples/<program> with `args`: --threads 1 first (for the programs that compute),
// since the cores are shared.
inline std::vector<std::string> program_command(const std::string& program, const std::vector<std::string>& args) {
  std::vector<std::string> words{kPrograms + "/" + program};
  const bool threads_given = std::find(args.begin(), args.end(), "--threads") != args.end();
  if (program != "gradformer-gradcheck" && program != "gradformer-average" && !threads_given)
    words.insert(words.end(), {"--threads", "1"});
  words.insert(words.end(), args.begin(), args.end());
  return words;
}

// Starts examples/<program> with `args` and its descriptors set up by `actions` (destroyed here); returns its pid.
inline pid_t spawn_program(const std::string& program, const std::vector<std::string>& args,
                           posix_spawn_file_actions_t& actions) {
  std::vector<std::string> words = program_command(program, args);
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, words[0].c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(spawned == 0, "cannot run " << words[0] << " (build the programs: ninja -C build)");
  return pid;
}

// Runs examples/<program> with `args`, its stdin opened from `stdin_path` (a file, a directory, ...) and its
// stdout on `stdout_path` (a device such as /dev/full; empty: a scratch file, read back into Outcome::out);
// waits and collects the exit code, stdout and stderr.
inline Outcome run_with(const std::string& program, const std::vector<std::string>& args,
                        const std::string& stdin_path, const std::string& stdout_path = "") {
  static const TempDir scratch("gradformer-test-programs-io");
  static int counter = 0;
  const std::string stem = scratch.str(std::to_string(counter++));
  const std::string out_path = stdout_path.empty() ? stem + ".out" : stdout_path;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, stdin_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   stdout_path.empty() ? O_WRONLY | O_CREAT | O_TRUNC : O_WRONLY, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (stem + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const pid_t pid = spawn_program(program, args, actions);
  int status = 0;
  waitpid(pid, &status, 0);
  Outcome outcome;
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (stdout_path.empty()) outcome.out = read_file(out_path);
  outcome.err = read_file(stem + ".err");
  return outcome;
}

// Runs examples/<program> with `args` and `input` on its stdin.
inline Outcome run(const std::string& program, const std::vector<std::string>& args, const std::string& input = "") {
  static const TempDir scratch("gradformer-test-programs-in");
  static int counter = 0;
  const std::string path = scratch.str(std::to_string(counter++) + ".in");
  write_file(path, input);
  return run_with(program, args, path);
}

// The names in `dir` that hold ".tmp." (a temporary file left behind by a writer).
inline size_t temporaries_in(const std::string& dir) {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    count += entry.path().filename().string().find(".tmp.") != std::string::npos;
  return count;
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

inline size_t count_lines_containing(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (const std::string& line : lines_of(text)) count += line.find(needle) != std::string::npos;
  return count;
}

// A small parallel corpus: 40 pairs of 3 to 6 words over a dozen letters, the target reversed.
inline std::string small_corpus() {
  std::string text;
  for (int i = 0; i < 40; ++i) {
    std::vector<std::string> words;
    for (int k = 0; k < 3 + i % 4; ++k) words.push_back(std::string(1, static_cast<char>('a' + (i * 7 + k * 3) % 12)));
    std::string source, target;
    for (size_t k = 0; k < words.size(); ++k) {
      source += (k ? " " : "") + words[k];
      target += (k ? " " : "") + words[words.size() - 1 - k];
    }
    text += source + "\t" + target + "\n";
  }
  return text;
}

// The few flags that make gradformer-train finish in a second on the small corpus.
inline std::vector<std::string> quick_train(const std::string& tsv, const std::string& out) {
  return {"--task", "tsv:" + tsv, "--out", out, "--max-steps", "2", "--valid-every", "0", "--max-tokens", "256"};
}

inline std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// One trained checkpoint shared by the program suites, made by gradformer-train itself.
struct Trained {
  TempDir dir{"gradformer-test-programs"};
  std::string checkpoint = dir.str("run/last.safetensors");
  Trained() {
    write_file(dir.str("corpus.tsv"), small_corpus());
    const Outcome o = run("gradformer-train", quick_train(dir.str("corpus.tsv"), dir.str("run")));
    INFO(o.err);
    REQUIRE(o.exit_code == 0);
  }
};

inline const Trained& trained() {
  static const Trained t;
  return t;
}

}  // namespace gradformer::testing
