// gradformer-translate as a careless or unlucky user runs it: output on a full device, through links, into FIFOs,
// a directory as stdin, a FIFO as checkpoint, a huge beam; and as a stream, answering each line of a pipe before
// the next one is written. Each case spawns the real program (tests/program_helpers.h). A program that hangs
// would hang the suite, so the cases that could are run with a limit and killed past it.
#include "tests/browser.h"
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace gradformer;
using namespace gradformer::testing;

namespace {

// Generous: a hang is what these limits catch, not slowness.
constexpr int kLimitSeconds = 120;

// A program started with pipes on its stdin and stdout and its stderr on a file, for the cases that talk to it
// while it runs.
class Conversation {
 public:
  Conversation(const std::string& program, const std::vector<std::string>& args) {
    int to_child[2], from_child[2];
    REQUIRE(::pipe(to_child) == 0);
    REQUIRE(::pipe(from_child) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], 0);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], 1);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]}) posix_spawn_file_actions_addclose(&actions, fd);
    std::vector<std::string> words = program_command(program, args);
    std::vector<char*> argv;
    for (std::string& word : words) argv.push_back(word.data());
    argv.push_back(nullptr);
    const int spawned = posix_spawn(&pid_, words[0].c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(to_child[0]);
    ::close(from_child[1]);
    stdin_ = to_child[1];
    stdout_ = from_child[0];
    REQUIRE_MESSAGE(spawned == 0, "cannot run " << words[0] << " (build the programs: ninja -C build)");
  }
  ~Conversation() {
    if (stdin_ >= 0) ::close(stdin_);
    ::close(stdout_);
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Conversation(const Conversation&) = delete;
  Conversation& operator=(const Conversation&) = delete;

  void say(const std::string& text) { REQUIRE(::write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size())); }
  void close_input() {
    ::close(stdin_);
    stdin_ = -1;
  }

  // The next line of its stdout, or "(no answer)" when none comes within the limit (the input stays open).
  std::string next_line() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kLimitSeconds);
    while (true) {
      if (const size_t end = pending_.find('\n'); end != std::string::npos) {
        std::string line = pending_.substr(0, end);
        pending_.erase(0, end + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd wait{stdout_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&wait, 1, static_cast<int>(left.count())) <= 0) return "(no answer)";
      char buffer[4096];
      const ssize_t got = ::read(stdout_, buffer, sizeof buffer);
      if (got <= 0) return "(no answer)";
      pending_.append(buffer, static_cast<size_t>(got));
    }
  }

  // The exit code once it exits, -1 for a crash, or -2 when it is still running after the limit (then killed).
  int wait() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kLimitSeconds);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -2;
  }
  std::string err() const { return read_file(err_path_); }
  void signal(int number) const { ::kill(pid_, number); }

 private:
  TempDir scratch_{"gradformer-test-conversation"};
  std::string err_path_ = scratch_.str("err");
  pid_t pid_ = 0;
  int stdin_ = -1, stdout_ = -1;
  bool exited_ = false;
  std::string pending_;
};

}  // namespace

TEST_SUITE("programs" * doctest::skip(!kProgramsBuilt)) {

TEST_CASE("programs: gradformer-translate --batch 1 answers each line of a pipe before the next is written") {
  const Trained& t = trained();
  const std::string expected = lines_of(run("gradformer-translate", {"--checkpoint", t.checkpoint}, "a b c\nd e f\n").out).at(1);
  Conversation translate("gradformer-translate", {"--checkpoint", t.checkpoint, "--batch", "1"});
  translate.say("a b c\n");
  const std::string first = translate.next_line();
  translate.say("\n");
  const std::string blank = translate.next_line();
  translate.say("d e f\n");
  const std::string third = translate.next_line();
  translate.close_input();
  INFO(translate.err());
  CHECK(first != "(no answer)");
  CHECK(blank.empty());
  CHECK(third == expected);
  CHECK(translate.wait() == 0);
}

TEST_CASE("programs: gradformer-translate interrupted by SIGINT keeps what it translated in --output") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string output = dir.str("out.txt");
  write_file(output, "old\n");
  Conversation translate("gradformer-translate", {"--checkpoint", t.checkpoint, "--batch", "1", "--output", output});
  translate.say("a b c\nd e f\n");
  // Both lines are in the replacement file once it holds two line ends; the program then waits for more input.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kLimitSeconds);
  std::string written;
  while (std::chrono::steady_clock::now() < deadline && lines_of(written).size() < 2) {
    for (const auto& entry : std::filesystem::directory_iterator(dir.str()))
      if (entry.path().filename().string().starts_with("out.txt.tmp.")) written = read_file(entry.path().string());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(lines_of(written).size() == 2);
  translate.signal(SIGINT);
  CHECK(translate.wait() == 130);
  CHECK(translate.err() == "gradformer-translate: interrupted after 2 sentences; " + output + " holds their translations\n");
  CHECK(read_file(output) == written);
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("programs: gradformer-translate reports a bad --output before reading any input") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string missing = dir.str("missing/out.txt");
  // The input stays open: a program that read it first would wait for ever.
  Conversation translate("gradformer-translate", {"--checkpoint", t.checkpoint, "--output", missing});
  CHECK(translate.wait() == 1);
  CHECK(translate.err() == "gradformer-translate: error: " + missing + ": cannot open for writing: No such file or "
                           "directory\n");
  Conversation into_directory("gradformer-translate", {"--checkpoint", t.checkpoint, "--output", dir.str()});
  CHECK(into_directory.wait() == 1);
  CHECK(into_directory.err() == "gradformer-translate: error: " + dir.str() + ": is a directory, not a file\n");
}

TEST_CASE("programs: gradformer-translate fails with exit 1 when its output cannot be written") {
  const Trained& t = trained();
  const TempDir dir;
  Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--output", "/dev/full"}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: /dev/full: write failed: No space left on device\n");

  write_file(dir.str("in.txt"), "a b c\n");
  o = run_with("gradformer-translate", {"--checkpoint", t.checkpoint}, dir.str("in.txt"), "/dev/full");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: stdout: write failed: No space left on device\n");

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--attention-svg", "/dev/full"}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: /dev/full: write failed: No space left on device\n");
  struct stat info {};
  CHECK((::stat("/dev/full", &info) == 0 && S_ISCHR(info.st_mode)));

  // A failed translation (here a checkpoint that is no checkpoint) leaves an existing --output as it was.
  write_file(dir.str("out.txt"), "kept\n");
  o = run("gradformer-translate", {"--checkpoint", dir.str("in.txt"), "--output", dir.str("out.txt")}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(read_file(dir.str("out.txt")) == "kept\n");
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("programs: gradformer-translate writes through a symbolic link and into a FIFO, replacing neither") {
  const Trained& t = trained();
  const TempDir dir;
  write_file(dir.str("old.txt"), "old\n");
  std::filesystem::create_symlink("old.txt", dir.str("link.txt"));
  Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--output", dir.str("link.txt"),
                                           "--attention-svg", dir.str("link.svg")}, "a b c\nd e\n");
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(std::filesystem::is_symlink(dir.str("link.txt")));
  CHECK(lines_of(read_file(dir.str("old.txt"))).size() == 2);
  CHECK(read_file(dir.str("link.svg")).starts_with("<svg"));

  const std::string fifo = dir.str("fifo");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  REQUIRE(reader >= 0);
  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--output", fifo}, "a b c\nd e\n");
  char buffer[4096] = {};
  const ssize_t got = ::read(reader, buffer, sizeof buffer);
  ::close(reader);
  CHECK(o.exit_code == 0);
  CHECK(std::filesystem::is_fifo(fifo));
  CHECK(std::string(buffer, static_cast<size_t>(std::max<ssize_t>(got, 0))) == read_file(dir.str("old.txt")));
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("programs: gradformer-translate refuses a directory on stdin, a huge beam and a FIFO as checkpoint") {
  const Trained& t = trained();
  const TempDir dir;
  Outcome o = run_with("gradformer-translate", {"--checkpoint", t.checkpoint}, dir.str());
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: stdin: read failed: Is a directory\n");

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--beam", "100000"}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: translate: beam size 100000 is outside 1..256\n");

  // Opening a FIFO for reading waits for a writer; none comes, so a program that opened it would never return.
  const std::string fifo = dir.str("checkpoint.safetensors");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  Conversation translate("gradformer-translate", {"--checkpoint", fifo});
  CHECK(translate.wait() == 1);
  CHECK(translate.err() == "gradformer-translate: error: " + fifo + ": not a regular file\n");
  Conversation resume("gradformer-train", quick_train(t.dir.str("corpus.tsv"), dir.str("run")) +
                                              std::vector<std::string>{"--resume", fifo});
  CHECK(resume.wait() == 1);
  CHECK(resume.err() == "gradformer-train: error: " + fifo + ": not a regular file\n");
}

TEST_CASE("programs: gradformer-translate --reference scores the stream and refuses a count that differs") {
  const Trained& t = trained();
  const TempDir dir;
  write_file(dir.str("refs.txt"), "c b a\n\nf e d\n");
  Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--reference", dir.str("refs.txt"), "--batch", "2"},
                  "a b c\n\nd e f\n");
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(lines_of(o.out).size() == 3);
  const std::vector<std::string> report = lines_of(o.err);
  REQUIRE(report.size() == 3);
  CHECK(report[0].starts_with("BLEU = "));
  CHECK(report[1].starts_with("chrF2 = "));
  CHECK(report[2].starts_with("exact match "));

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--reference", dir.str("refs.txt")}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + dir.str("refs.txt") + ": 3 references for 1 sources\n");

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--reference", dir.str("missing.txt")}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + dir.str("missing.txt") + ": cannot open for reading\n");
  CHECK(o.out.empty());
}

TEST_CASE("programs: gradformer-translate --n-best prints the Moses/Marian format, best first, and is bounded by --beam") {
  const Trained& t = trained();
  const std::string input = "a b c\n\nd e f\n";
  const Outcome best = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--beam", "4"}, input);
  REQUIRE(best.exit_code == 0);
  const std::vector<std::string> best_lines = lines_of(best.out);
  REQUIRE(best_lines.size() == 3);

  for (const std::string k : {"1", "4"}) {
    CAPTURE(k);
    const Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--beam", "4", "--n-best", k}, input);
    INFO(o.err);
    REQUIRE(o.exit_code == 0);
    const std::vector<std::string> lines = lines_of(o.out);
    // Sentence 1 is blank: one empty hypothesis, as the plain output has one empty line.
    CHECK(lines.size() == (k == "1" ? 3u : 9u));
    std::vector<size_t> per_sentence(3, 0);
    for (const std::string& line : lines) {
      CAPTURE(line);
      const size_t a = line.find(" ||| "), b = line.find(" ||| F0= "), c = line.rfind(" ||| ");
      REQUIRE(a != std::string::npos);
      REQUIRE(b != std::string::npos);
      REQUIRE(c > b);
      const size_t id = std::stoul(line.substr(0, a));
      REQUIRE(id < 3);
      const std::string hypothesis = line.substr(a + 5, b - a - 5);
      if (per_sentence[id]++ == 0) CHECK(hypothesis == best_lines[id]);
      const double log_prob = std::stod(line.substr(b + 9, c - b - 9)), score = std::stod(line.substr(c + 5));
      CHECK(log_prob <= 0.0);
      CHECK(score <= 0.0);
    }
    CHECK(per_sentence[1] == 1);
  }

  const TempDir dir;
  const std::string output = dir.str("out.txt");
  write_file(output, "kept\n");
  const Outcome o =
      run("gradformer-translate", {"--checkpoint", t.checkpoint, "--beam", "4", "--n-best", "5", "--output", output}, input);
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: --n-best: 5 exceeds --beam 4: a beam holds at most as many hypotheses "
                 "as its size\n");
  CHECK(read_file(output) == "kept\n");
}

TEST_CASE("programs: gradformer-translate ensembles checkpoints that share a vocabulary and refuses others") {
  const Trained& t = trained();
  const std::string input = "a b c\nd e f\n";
  const Outcome alone = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--beam", "3"}, input);
  REQUIRE(alone.exit_code == 0);
  const Outcome twice =
      run("gradformer-translate", {"--checkpoint", t.checkpoint, "--checkpoint", t.checkpoint, "--beam", "3"}, input);
  INFO(twice.err);
  CHECK(twice.exit_code == 0);
  CHECK(twice.out == alone.out);

  // The same corpus in other letters: another vocabulary.
  const TempDir dir;
  std::string shifted = small_corpus();
  for (char& ch : shifted)
    if (ch >= 'a' && ch <= 'l') ch = static_cast<char>(ch + 12);
  write_file(dir.str("other.tsv"), shifted);
  const Outcome trained_other = run("gradformer-train", quick_train(dir.str("other.tsv"), dir.str("run")));
  INFO(trained_other.err);
  REQUIRE(trained_other.exit_code == 0);
  const std::string other = dir.str("run/last.safetensors");
  const std::string output = dir.str("out.txt");
  write_file(output, "kept\n");
  const Outcome o =
      run("gradformer-translate", {"--checkpoint", t.checkpoint, "--checkpoint", other, "--output", output}, input);
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + other + ": its vocabulary or tokenizer differs from " +
                     t.checkpoint + "'s; the models of an ensemble must share both\n");
  CHECK(read_file(output) == "kept\n");
}

// The JSON a page of models/html_report.h embeds.
nlohmann::json page_data(const std::string& html) {
  const std::string open = "<script type=\"application/json\" id=\"gradformer-data\">";
  const size_t start = html.find(open), end = html.find("</script>", start);
  REQUIRE(start != std::string::npos);
  return nlohmann::json::parse(html.substr(start + open.size(), end - start - open.size()));
}

TEST_CASE("programs: --attention-html explores the first sentences that are not blank, with their n-best lists") {
  const Trained& t = trained();
  const TempDir dir;
  write_file(dir.str("in.txt"), "a b c\n\nd e\nb c\n");
  Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--input", dir.str("in.txt"), "--beam", "2",
                                           "--n-best", "2", "--attention-html", dir.str("a.html")});
  INFO(o.err);
  REQUIRE(o.exit_code == 0);
  CHECK(o.err.find("wrote the attention of 3 sentences to " + dir.str("a.html")) != std::string::npos);
  const nlohmann::json data = page_data(read_file(dir.str("a.html")));
  REQUIRE(data["sentences"].size() == 3);
  CHECK(data["show_n_best"] == true);
  CHECK(data["sentences"][1]["line"] == 3);  // line 2 is blank
  CHECK(data["sentences"][1]["source"] == "d e");
  for (const nlohmann::json& sentence : data["sentences"]) {
    CHECK(sentence["n_best"].size() == 2);
    for (const char* kind : {"encoder self", "decoder self", "cross"}) CHECK(sentence["attention"].contains(kind));
  }
  // The page's best hypothesis is the program's translation of that line (output lines 0 and 1 are sentence 0's,
  // 2 the blank line's one empty hypothesis).
  const std::vector<std::string> n_best = lines_of(o.out);
  CHECK(n_best.at(3).starts_with("2 ||| " + data["sentences"][1]["n_best"][0]["text"].get<std::string>() + " |||"));

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--attention-html", dir.str("b.html"),
                                   "--attention-sentences", "1"}, "a b c\nd e\n");
  CHECK(o.exit_code == 0);
  CHECK(page_data(read_file(dir.str("b.html")))["sentences"].size() == 1);
  CHECK(page_data(read_file(dir.str("b.html")))["show_n_best"] == false);

  // Never over an input; nothing to show is an error, not an empty page.
  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--input", dir.str("in.txt"), "--attention-html",
                                   dir.str("in.txt")});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: --attention-html " + dir.str("in.txt") + ": is " + dir.str("in.txt") +
                     ", an input of this run; it would be overwritten\n");
  CHECK(read_file(dir.str("in.txt")) == "a b c\n\nd e\nb c\n");
  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--attention-html", dir.str("c.html")}, "\n  \n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: --attention-html: every input sentence is blank: no attention to show\n");
  CHECK(!std::filesystem::exists(dir.str("c.html")));
  CHECK(run("gradformer-translate", {"--checkpoint", t.checkpoint, "--attention-sentences", "0"}).exit_code == 2);

  REQUIRE_MESSAGE(!chromium_path().empty(), "the browser tests need chromium (apt-get install chromium)");
  Browser browser;
  browser.open(dir.str("a.html"));
  CHECK(browser.evaluate("document.getElementById('sentence').options.length") == 3);
  CHECK(browser.evaluate("document.querySelectorAll('#n-best tr').length") == 3);
  INFO(fmt::format("{}", fmt::join(browser.problems(), "\n")));
  CHECK(browser.problems().empty());
}

TEST_CASE("programs: gradformer-train writes report.html beside loss.svg at every validation") {
  const TempDir dir;
  const Outcome o = run("gradformer-train", {"--task", "copy", "--out", dir.str("run"), "--max-steps", "4",
                                             "--valid-every", "2", "--max-tokens", "256", "--valid-bleu-sentences",
                                             "5", "--test-beam", "1"});
  INFO(o.err);
  REQUIRE(o.exit_code == 0);
  CHECK(std::filesystem::exists(dir.str("run/loss.svg")));
  const nlohmann::json data = page_data(read_file(dir.str("run/report.html")));
  CHECK(data["step"] == 4);
  CHECK(data["train_nll"]["points"].size() == 4);
  CHECK(data["valid_nll"]["points"].size() == 2);
  CHECK(data["valid_nll"]["points"].size() == data["bleu"]["points"].size());
  CHECK(data["chrf"]["points"].size() == 2);
  CHECK(data["learning_rate"]["points"].size() == 4);
  CHECK(data["tokens_per_second"]["points"].size() == 4);
  CHECK(data["best"]["path"] == dir.str("run") + "/best.safetensors");
  CHECK(data["config"]["model"]["model"] == "transformer-tiny");
  CHECK(data["config"]["training"]["max_tokens"] == 256);
  CHECK(data["machine"]["threads"] == 1);

  REQUIRE_MESSAGE(!chromium_path().empty(), "the browser tests need chromium (apt-get install chromium)");
  Browser browser;
  browser.open(dir.str("run/report.html"), 1200, 1400);
  CHECK(browser.evaluate("document.querySelectorAll('.chart path.series').length") == 9);
  INFO(fmt::format("{}", fmt::join(browser.problems(), "\n")));
  CHECK(browser.problems().empty());
}

}  // TEST_SUITE
