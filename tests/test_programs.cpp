// The programs' answers to bad input, run as a user runs them: each built program is spawned with its stdin,
// stdout and stderr on files, and the test checks the exit status and the one line it prints
// ("gradformer-xxx: error: ..."), and that no checkpoint was lost. Programs come from GRADFORMER_PROGRAMS
// (tests/meson.build); a build without examples (run.sh's sanitizer build) skips these tests.
#include "models/task.h"
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "tests/helpers.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace gradformer;
using testing::TempDir;

namespace {

#ifdef GRADFORMER_PROGRAMS
constexpr bool kProgramsBuilt = true;
const std::string kPrograms = GRADFORMER_PROGRAMS;
#else
constexpr bool kProgramsBuilt = false;
const std::string kPrograms;
#endif

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

struct Outcome {
  int exit_code = -1;  // -1: did not exit normally (a crash)
  std::string out, err;
};

// Runs examples/<program> with `args`, `input` on its stdin; waits and collects exit code, stdout and stderr.
Outcome run(const std::string& program, const std::vector<std::string>& args, const std::string& input = "") {
  static const TempDir scratch("gradformer-test-programs-io");
  static int counter = 0;
  const std::string stem = scratch.str(std::to_string(counter++));
  write_file(stem + ".in", input);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, (stem + ".in").c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, (stem + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (stem + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string path = kPrograms + "/" + program;
  std::vector<std::string> words{path};
  const bool threads_given = std::find(args.begin(), args.end(), "--threads") != args.end();
  if (program != "gradformer-gradcheck" && !threads_given)
    words.insert(words.end(), {"--threads", "1"});  // the cores are shared
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(spawned == 0, "cannot run " << path << " (build the programs: ninja -C build)");
  int status = 0;
  waitpid(pid, &status, 0);
  Outcome outcome;
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  outcome.out = read_file(stem + ".out");
  outcome.err = read_file(stem + ".err");
  return outcome;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

size_t count_lines_containing(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (const std::string& line : lines_of(text)) count += line.find(needle) != std::string::npos;
  return count;
}

// A small parallel corpus: 40 pairs of 3 to 6 words over a dozen letters, the target reversed.
std::string small_corpus() {
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
std::vector<std::string> quick_train(const std::string& tsv, const std::string& out) {
  return {"--task", "tsv:" + tsv, "--out", out, "--max-steps", "2", "--valid-every", "0", "--max-tokens", "256"};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// One trained checkpoint shared by the translate tests, made by gradformer-train itself.
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

const Trained& trained() {
  static const Trained t;
  return t;
}

// Writes a safetensors file without gradformer's checkpoint metadata (as PyTorch's save_file would).
void write_plain_safetensors(const std::string& path) {
  Generator gen(1);
  const nn::Linear linear(2, 3, true, gen);
  nn::save_weights(path, linear);
}

}  // namespace

TEST_SUITE("programs" * doctest::skip(!kProgramsBuilt)) {

TEST_CASE("programs: gradformer-train reports a missing, a directory and a malformed TSV file") {
  const TempDir dir;
  const std::string missing = dir.str("missing.tsv");
  Outcome o = run("gradformer-train", quick_train(missing, dir.str("run")));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: tsv " + missing + ": cannot open for reading\n");

  o = run("gradformer-train", quick_train(dir.str(), dir.str("run")));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: tsv " + dir.str() + ": is a directory, not a file\n");

  const std::string bad = dir.str("bad.tsv");
  write_file(bad, "a b\tb a\nc d e\nf\tg\th\n");
  o = run("gradformer-train", quick_train(bad, dir.str("run")));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: " + bad + ": line 2: expected source<TAB>target, found 0 tabs\n");
  CHECK_FALSE(std::filesystem::exists(dir.str("run/last.safetensors")));
}

TEST_CASE("programs: gradformer-train --skip-bad-lines goes on and counts malformed and empty lines") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus() + "no tab here\n\n  \t \nx\ty\tz\n");
  const Outcome o = run("gradformer-train", quick_train(tsv, dir.str("run")) + std::vector<std::string>{"--skip-bad-lines"});
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(o.err == "gradformer-train: warning: " + tsv + ": skipped 2 malformed and 2 empty lines of 44\n");
  CHECK(std::filesystem::exists(dir.str("run/last.safetensors")));
}

TEST_CASE("programs: gradformer-train truncates over-long sentences with one warning") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  const Outcome o =
      run("gradformer-train", quick_train(tsv, dir.str("run")) + std::vector<std::string>{"--max-sentence-tokens", "4"});
  INFO(o.err);
  CHECK(o.exit_code == 0);
  // 20 of the 40 pairs have 5 or 6 words; all 40 land in train or valid (test is split off by hash).
  CHECK(count_lines_containing(o.err, "warning") == 1);
  CHECK(count_lines_containing(o.err, "pairs were longer than 4 tokens on a side and were truncated to 4 "
                                      "(--max-sentence-tokens)") == 1);
}

TEST_CASE("programs: gradformer-train names the valid models, tasks and flag values") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  const std::vector<std::string> base{"--out", dir.str("run"), "--max-steps", "2", "--valid-every", "0"};
  const std::vector<std::string> task{"--task", "tsv:" + tsv};
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string err;
  };
  const std::vector<Case> cases{
      {{"--model", "transformer-huge"}, 2,
       "gradformer-train: error: --model: transformer-huge not in {rnn-attention,attention-seq2seq,transformer-tiny,"
       "transformer-small,transformer-base} (see --help)"},
      {{"--task", "nope"}, 1,
       "gradformer-train: error: task: unknown task 'nope' (known: grammar, ding-sentences, ding-phrases, copy, "
       "reverse, tsv:PATH)"},
      {{"--tokenizer", "morse"}, 2, "gradformer-train: error: --tokenizer: morse not in {word,char,bpe} (see --help)"},
      {{"--max-tokens", "-5"}, 2, "gradformer-train: error: --max-tokens: expected an integer >= 1, got '-5' (see --help)"},
      {{"--max-sentence-tokens", "0"}, 2,
       "gradformer-train: error: --max-sentence-tokens: expected an integer >= 1, got '0' (see --help)"},
      {{"--max-sentence-tokens", "512"}, 1,
       "gradformer-train: error: --max-sentence-tokens: 512 does not fit the model's 512 positions (one more is needed "
       "for <eos>); at most 511"},
      {{"--dropout", "1.5"}, 2, "gradformer-train: error: --dropout: expected a number in [0, 1), got '1.5' (see --help)"},
      {{"--lr-factor", "nan"}, 2,
       "gradformer-train: error: --lr-factor: expected a finite number >= 0, got 'nan' (see --help)"},
      {{"--max-steps", "ten"}, 2, "gradformer-train: error: --max-steps: expected an integer >= 0, got 'ten' (see --help)"},
      {{"--no-such-flag"}, 2,
       "gradformer-train: error: The following argument was not expected: --no-such-flag (see --help)"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args[0]);
    const Outcome o = run("gradformer-train", base + (c.args[0] == "--task" ? c.args : task + c.args));
    CHECK(o.exit_code == c.exit_code);
    CHECK(o.err == c.err + "\n");
  }
  CHECK_FALSE(std::filesystem::exists(dir.str("run/last.safetensors")));
}

TEST_CASE("programs: gradformer-train keeps the checkpoints of an --out DIR it was not asked to continue") {
  const Trained& t = trained();
  const std::string before = read_file(t.checkpoint);
  const std::string run_dir = std::filesystem::path(t.checkpoint).parent_path().string();
  const std::string tsv = t.dir.str("corpus.tsv");
  Outcome o = run("gradformer-train", quick_train(tsv, run_dir));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --out " + run_dir + ": already holds last.safetensors; continue it with "
                 "--resume " + run_dir + "/last.safetensors, or start afresh there with --overwrite\n");
  CHECK(read_file(t.checkpoint) == before);

  // An --out that is a file.
  o = run("gradformer-train", quick_train(tsv, tsv));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --out " + tsv + ": exists and is not a directory\n");
}

TEST_CASE("programs: gradformer-train --resume refuses a directory, a foreign file and another model") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string tsv = t.dir.str("corpus.tsv");
  const std::vector<std::string> base = quick_train(tsv, dir.str("run"));
  Outcome o = run("gradformer-train", base + std::vector<std::string>{"--resume", dir.str()});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: " + dir.str() + ": not a regular file\n");

  const std::string plain = dir.str("plain.safetensors");
  write_plain_safetensors(plain);
  o = run("gradformer-train", base + std::vector<std::string>{"--resume", plain});
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-train: error: " + plain + ": has no gradformer training metadata"));

  o = run("gradformer-train", base + std::vector<std::string>{"--resume", t.checkpoint, "--model", "rnn-attention"});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --model rnn-attention: " + t.checkpoint + " holds a transformer-tiny model; "
                 "resuming keeps the checkpoint's model, so drop --model or start a new run\n");
  CHECK_FALSE(std::filesystem::exists(dir.str("run/last.safetensors")));
}

TEST_CASE("programs: gradformer-translate refuses missing, directory, foreign and mismatched checkpoints") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string missing = dir.str("missing.safetensors");
  Outcome o = run("gradformer-translate", {"--checkpoint", missing}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + missing + ": cannot open: No such file or directory\n");

  o = run("gradformer-translate", {"--checkpoint", dir.str()}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + dir.str() + ": not a regular file\n");

  const std::string plain = dir.str("plain.safetensors");
  write_plain_safetensors(plain);
  o = run("gradformer-translate", {"--checkpoint", plain}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-translate: error: " + plain + ": has no gradformer training metadata"));

  // The trained checkpoint's configuration (transformer-tiny, d_model 64) over the tensors of a narrower model.
  nlohmann::json config = nn::read_checkpoint_config(t.checkpoint).config;
  nlohmann::json narrow = config;
  narrow.erase("codec");
  narrow["d_model"] = 32;
  const auto other = models::make_model(narrow);
  nn::TrainingState state;
  state.generator = Generator(1).state();
  const std::string mismatched = dir.str("mismatched.safetensors");
  nn::save_checkpoint(mismatched, *other, nullptr, state, config);
  o = run("gradformer-translate", {"--checkpoint", mismatched}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-translate: error: " + mismatched + ": does not fit the TransformerSeq2Seq model: "));
  CHECK(lines_of(o.err).size() == 1);

  // A gradformer checkpoint written by the API without gradformer-train's vocabulary.
  const std::string bare = dir.str("bare.safetensors");
  nn::save_checkpoint(bare, *other, nullptr, state, narrow);
  o = run("gradformer-translate", {"--checkpoint", bare}, "a b c\n");
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-translate: error: " + bare +
                     ": the checkpoint holds no vocabulary (was it written by gradformer-train?)\n");
}

TEST_CASE("programs: gradformer-translate keeps empty lines, truncates long ones with one warning") {
  const Trained& t = trained();
  Outcome o = run("gradformer-translate", {"--checkpoint", t.checkpoint}, "a b c\n\n  \nd e f\n\n");
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(o.err.empty());
  const std::vector<std::string> lines = lines_of(o.out);
  REQUIRE(lines.size() == 5);
  CHECK(lines[1].empty());
  CHECK(lines[2].empty());
  CHECK(lines[4].empty());

  o = run("gradformer-translate", {"--checkpoint", t.checkpoint, "--max-sentence-tokens", "2"}, "a b c\nd\n\ne f g h\n");
  CHECK(o.exit_code == 0);
  CHECK(lines_of(o.out).size() == 4);
  CHECK(o.err == "gradformer-translate: warning: 2 of 3 sentences were longer than 2 tokens and were truncated to 2 "
                 "(--max-sentence-tokens)\n");
}

TEST_CASE("programs: gradformer-translate refuses bad flag values and a missing input file") {
  const Trained& t = trained();
  const TempDir dir;
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string err;
  };
  const std::string missing = dir.str("missing.txt");
  const std::vector<Case> cases{
      {{"--beam", "0"}, 2, "gradformer-translate: error: --beam: expected an integer >= 1, got '0' (see --help)"},
      {{"--batch", "-1"}, 2, "gradformer-translate: error: --batch: expected an integer >= 1, got '-1' (see --help)"},
      {{"--max-length", "513"}, 1, "gradformer-translate: error: --max-length: 513 exceeds the model's 512 positions"},
      {{"--max-sentence-tokens", "512"}, 1,
       "gradformer-translate: error: --max-sentence-tokens: 512 does not fit the model's 512 positions (one more is "
       "needed for <eos>); at most 511"},
      {{"--length-penalty", "inf"}, 2,
       "gradformer-translate: error: --length-penalty: expected a number in [-10, 10], got 'inf' (see --help)"},
      {{"--input", missing}, 1, "gradformer-translate: error: " + missing + ": cannot open for reading"},
      {{"--input", dir.str()}, 1, "gradformer-translate: error: " + dir.str() + ": is a directory, not a file"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args[0]);
    const Outcome o = run("gradformer-translate", std::vector<std::string>{"--checkpoint", t.checkpoint} + c.args, "a b\n");
    CHECK(o.exit_code == c.exit_code);
    CHECK(o.err == c.err + "\n");
  }
  const Outcome o = run("gradformer-translate", {}, "a b\n");
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-translate: error: --checkpoint is required (see --help)\n");
}

TEST_CASE("programs: gradformer-gradcheck and gradformer-bench refuse unknown names and bad flag values") {
  Outcome o = run("gradformer-gradcheck", {"--only", "no-such-op"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-gradcheck: error: --only: unknown name 'no-such-op' (see --list)\n");
  o = run("gradformer-bench", {"--config", "huge"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-bench: error: --config: huge not in {toy,small,base} (see --help)\n");
  o = run("gradformer-bench", {"--steps", "-3"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-bench: error: --steps: expected an integer >= 0, got '-3' (see --help)\n");
}

TEST_CASE("programs: --threads past 4 x the cores is refused by every program that takes it") {
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  const std::string most = std::to_string(4 * cores);
  for (const std::string program : {"gradformer-train", "gradformer-translate", "gradformer-bench"}) {
    CAPTURE(program);
    const Outcome o = run(program, {"--threads", "65536"});
    CHECK(o.exit_code == 2);
    CHECK(o.err == program + ": error: --threads: expected an integer in [0, " + most + "] (0: all cores; at most 4 x "
                   "the " + std::to_string(cores) +
                   " cores), got '65536' (see --help)\n");
  }
}

TEST_CASE("programs: gradformer-train refuses seeds outside 0..2^64-1 and a --test-beam past its bound") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  for (const std::string seed : {"-1", "18446744073709551616", "1e3"}) {
    CAPTURE(seed);
    const Outcome o = run("gradformer-train", quick_train(tsv, dir.str("run")) + std::vector<std::string>{"--seed", seed});
    CHECK(o.exit_code == 2);
    CHECK(o.err == "gradformer-train: error: --seed: expected an integer in [0, 18446744073709551615], got '" + seed +
                       "' (see --help)\n");
  }
  const Outcome o = run("gradformer-train", quick_train(tsv, dir.str("run")) + std::vector<std::string>{"--test-beam", "100000"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-train: error: --test-beam: expected an integer in [1, 256], got '100000' (see --help)\n");
  CHECK_FALSE(std::filesystem::exists(dir.str("run")));
}

TEST_CASE("programs: gradformer-train --write-data replaces no file without --overwrite") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  const std::vector<std::string> args{"--task", "tsv:" + tsv, "--write-data", dir.str("data")};
  Outcome o = run("gradformer-train", args);
  INFO(o.err);
  CHECK(o.exit_code == 0);
  write_file(dir.str("data/valid.tsv"), "mine\tkeep\n");
  o = run("gradformer-train", args);
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --write-data " + dir.str("data") + ": " + dir.str("data") +
                     "/train.tsv exists; add --overwrite to replace it\n");
  CHECK(read_file(dir.str("data/valid.tsv")) == "mine\tkeep\n");
  o = run("gradformer-train", args + std::vector<std::string>{"--overwrite"});
  CHECK(o.exit_code == 0);
  CHECK(read_file(dir.str("data/valid.tsv")) != "mine\tkeep\n");
}

TEST_CASE("programs: gradformer-train holds DIR/.lock, checks --out is writable and reports a full train.log") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  const std::string out = dir.str("run");
  {
    const models::OutDirLock other(out);  // this test process plays the other run
    const Outcome o = run("gradformer-train", quick_train(tsv, out));
    CHECK(o.exit_code == 1);
    CHECK(o.err == fmt::format("gradformer-train: error: {}: another training run (pid {}) is using this directory "
                               "({}/.lock is locked); wait for it to end, or choose another --out\n",
                               out, ::getpid(), out));
  }
  Outcome o = run("gradformer-train", quick_train(tsv, "/proc/gradformer-no-such/run"));
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-train: error: /proc/gradformer-no-such/run: cannot create the directory: "));

  // A full disk under train.log (/dev/full stands in for it) stops the run with the reason.
  const std::string full = dir.str("full");
  std::filesystem::create_directories(full);
  std::filesystem::create_symlink("/dev/full", full + "/train.log");
  o = run("gradformer-train", quick_train(tsv, full));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: " + full + "/train.log: write failed: No space left on device\n");
}

namespace {

// The small corpus without the pairs the TSV task would split off as validation or test sentences.
std::string corpus_without_held_out() {
  std::string kept;
  for (const std::string& line : lines_of(small_corpus()))
    if (data::fnv1a64(line.substr(0, line.find('\t'))) % 100 >= 2) kept += line + "\n";
  return kept;
}

}  // namespace

TEST_CASE("programs: gradformer-train resumes in its checkpoint's directory, on its data, and guards other ones") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv"), other_tsv = dir.str("other.tsv");
  write_file(tsv, small_corpus());
  write_file(other_tsv, "x y\ty x\n");
  REQUIRE(run("gradformer-train", quick_train(tsv, dir.str("a"))).exit_code == 0);
  REQUIRE(run("gradformer-train", quick_train(tsv, dir.str("b"))).exit_code == 0);
  const std::string a_last = dir.str("a/last.safetensors"), b_last = dir.str("b/last.safetensors");
  const std::string b_before = read_file(b_last);

  // Into another run's directory: refused, that run's checkpoint untouched.
  Outcome o = run("gradformer-train", {"--resume", a_last, "--out", dir.str("b"), "--max-steps", "4"});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --out " + dir.str("b") + ": already holds last.safetensors of another run; "
                 "a resume writes into the directory of its checkpoint unless --out names a new one (or --overwrite "
                 "is given)\n");
  CHECK(read_file(b_last) == b_before);

  // A conflicting --task names both.
  o = run("gradformer-train", {"--resume", a_last, "--task", "tsv:" + other_tsv, "--max-steps", "4"});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --task tsv:" + other_tsv + ": " + a_last + " was trained with --task tsv:" +
                 tsv + "; a resume keeps its checkpoint's data, so drop --task or start a new run\n");

  // Without --out and --task: the checkpoint's directory and data.
  o = run("gradformer-train", {"--resume", a_last, "--max-steps", "4", "--valid-every", "0", "--max-tokens", "256"});
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("task tsv:" + tsv + ": ") != std::string::npos);
  CHECK(nn::read_checkpoint_config(a_last).state.step == 4);
  CHECK(read_file(b_last) == b_before);
}

TEST_CASE("programs: gradformer-train reads a BOM, names invalid UTF-8, and says when a split is empty") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, "\xEF\xBB\xBF" + corpus_without_held_out());
  Outcome o = run("gradformer-train", {"--task", "tsv:" + tsv, "--out", dir.str("run"), "--max-steps", "2",
                                      "--valid-every", "2", "--max-tokens", "256"});
  INFO(o.err);
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("valid step      2: no validation sentences\n") != std::string::npos);
  CHECK(o.out.find("test: no test sentences, nothing to score\n") != std::string::npos);
  CHECK(o.out.find("BLEU") == std::string::npos);
  // The BOM did not become part of the first word.
  nlohmann::json config = nn::read_checkpoint_config(dir.str("run/last.safetensors")).config;
  const models::TextCodec codec = models::TextCodec::take_from_config(config, "run");
  const std::string first_word = corpus_without_held_out().substr(0, 1);
  CHECK(codec.vocabulary().contains(first_word));
  CHECK_FALSE(codec.vocabulary().contains("\xEF\xBB\xBF" + first_word));

  const std::string latin1 = dir.str("latin1.tsv");
  write_file(latin1, small_corpus() + "Gr\xFC\xDF" "e\tgreetings\n");
  o = run("gradformer-train", quick_train(latin1, dir.str("run2")));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: " + latin1 + ": line 41: not valid UTF-8 (byte 0xfc at byte 3 of the line); "
                 "convert the file to UTF-8, or skip such lines with --skip-bad-lines\n");
  o = run("gradformer-train", quick_train(latin1, dir.str("run2")) + std::vector<std::string>{"--skip-bad-lines"});
  CHECK(o.exit_code == 0);
  CHECK(o.err == "gradformer-train: warning: " + latin1 + ": skipped 1 malformed and 0 empty lines of 41\n");
}

}  // TEST_SUITE
