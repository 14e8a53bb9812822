// The programs against a careless user's files and signals, run as a user runs them (tests/program_helpers.h):
// a resume that must remove only its own run's step checkpoints, outputs that name an input, checkpoint
// configurations that would build a huge model, signals and a closed stdout, two averaging runs on one output,
// step checkpoints of several runs, a diverged run. Each case checks the exit status, the line printed and that
// no file was lost.
#include "models/data/corpus.h"
#include "nn/checkpoint.h"
#include "nn/safetensors.h"
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

using namespace gradformer;
using namespace gradformer::testing;
namespace fs = std::filesystem;

namespace {

// Rewrites a checkpoint's "config" and "training" metadata as a hand with a text editor would.
void edit_metadata(const std::string& path, const std::function<void(nlohmann::json& config, nlohmann::json& training)>& edit) {
  safetensors::File file = safetensors::load(path);
  nlohmann::json config = nlohmann::json::parse(file.metadata.at("config"));
  nlohmann::json training = nlohmann::json::parse(file.metadata.at("training"));
  edit(config, training);
  file.metadata["config"] = config.dump();
  file.metadata["training"] = training.dump();
  safetensors::save_atomic(path, file);
}

std::vector<std::string> step_files(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    if (const std::string name = entry.path().filename().string(); name.starts_with("step-")) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

// A run on the small corpus that validates (and so writes `last` and a step checkpoint) every `valid_every` steps.
std::vector<std::string> stepping_run(const std::string& tsv, const std::string& out, int steps, int keep_last,
                                      int valid_every = 1) {
  return {"--task", "tsv:" + tsv, "--out", out, "--max-steps", std::to_string(steps), "--valid-every",
          std::to_string(valid_every), "--valid-bleu-sentences", "0", "--max-tokens", "256", "--keep-last",
          std::to_string(keep_last)};
}

// A program started with its stdout and stderr on files, signalled while it runs.
class Running {
 public:
  Running(const std::string& program, const std::vector<std::string>& args, const std::string& stdin_path = "/dev/null") {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, stdin_path.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_ = spawn_program(program, args, actions);
  }
  ~Running() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

  void signal(int number) const { ::kill(pid_, number); }
  // The exit code, or -1 for a death by signal.
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

 private:
  TempDir scratch_{"gradformer-test-running"};
  std::string out_ = scratch_.str("out"), err_ = scratch_.str("err");
  pid_t pid_ = 0;
  bool exited_ = false;
};

// Waits (at most two minutes: a hang is what this catches) until `ready` holds.
bool wait_for(const std::function<bool()>& ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
  while (std::chrono::steady_clock::now() < deadline) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// Enough lines to keep gradformer-translate busy for a while.
std::string many_sentences(size_t count) {
  std::string text;
  for (size_t i = 0; i < count; ++i) text += "a b c d e f\n";
  return text;
}

// The size of the first temporary file in `dir`, -1 when there is none.
int64_t temporary_size(const std::string& dir) {
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) {
      std::error_code gone;
      const auto size = fs::file_size(entry.path(), gone);
      return gone ? -1 : static_cast<int64_t>(size);
    }
  return -1;
}

}  // namespace

TEST_SUITE("programs" * doctest::skip(!kProgramsBuilt)) {

TEST_CASE("programs: --resume removes only its own run's step checkpoints, never files its metadata names") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  const std::string a = dir.str("a"), b = dir.str("b");
  Outcome o = run("gradformer-train", stepping_run(tsv, a, 2, 1));
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(step_files(a) == std::vector<std::string>{"step-000002.safetensors"});

  // A checkpoint whose list of step files names other files: none of them is removed.
  write_file(dir.str("precious.txt"), "keep");
  write_file(a + "/notes.txt", "keep");
  write_file(dir.str("absolute.txt"), "keep");
  edit_metadata(a + "/last.safetensors", [&](nlohmann::json&, nlohmann::json& training) {
    training["extra"]["step_checkpoints"] = {"../precious.txt", dir.str("absolute.txt"), "notes.txt"};
  });
  o = run("gradformer-train", stepping_run(tsv, a, 4, 1) + std::vector<std::string>{"--resume", a + "/last.safetensors"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  for (const std::string& kept : {dir.str("precious.txt"), a + "/notes.txt", dir.str("absolute.txt")})
    CHECK(read_file(kept) == "keep");
  CHECK(step_files(a) == std::vector<std::string>{"step-000004.safetensors"});

  // A step checkpoint of run A copied into run B's directory and resumed there: refused, B untouched.
  o = run("gradformer-train", stepping_run(tsv, b, 2, 2));
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  fs::copy_file(a + "/step-000004.safetensors", b + "/step-000004.safetensors");
  const std::string b_last = read_file(b + "/last.safetensors"), b_log = read_file(b + "/train.log");
  o = run("gradformer-train", stepping_run(tsv, b, 6, 1) + std::vector<std::string>{"--resume", b + "/step-000004.safetensors"});
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-train: error: --resume " + b + "/step-000004.safetensors: is a checkpoint of "
                          "another run than " + b + "/last.safetensors (run id "));
  CHECK(read_file(b + "/last.safetensors") == b_last);
  CHECK(read_file(b + "/train.log") == b_log);
  CHECK(step_files(b) == std::vector<std::string>{"step-000001.safetensors", "step-000002.safetensors",
                                                  "step-000004.safetensors"});
  CHECK_FALSE(fs::exists(b + "/.lock"));
  CHECK(nn::run_id_of(b + "/last.safetensors") != nn::run_id_of(a + "/last.safetensors"));
  CHECK(nn::run_id_of(b + "/last.safetensors").size() == 32);
}

TEST_CASE("programs: --overwrite removes another run's step checkpoints; gradformer-average warns of mixed runs") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv"), out = dir.str("cc1");
  write_file(tsv, small_corpus());
  REQUIRE(run("gradformer-train", stepping_run(tsv, out, 4, 2)).exit_code == 0);
  fs::copy_file(out + "/step-000004.safetensors", dir.str("old-step-4.safetensors"));
  write_file(out + "/step-000009.safetensors", "not a checkpoint");  // no run's: stays

  // Without --overwrite, step checkpoints alone are enough to refuse a new run.
  fs::remove(out + "/last.safetensors");
  fs::remove(out + "/best.safetensors");
  Outcome o = run("gradformer-train", stepping_run(tsv, out, 2, 2));
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-train: error: --out " + out + ": already holds step checkpoints of a run "
                 "(step-000003.safetensors, ...); resume one with --resume, or start afresh there with --overwrite "
                 "(which removes them)\n");

  o = run("gradformer-train", stepping_run(tsv, out, 2, 2) + std::vector<std::string>{"--overwrite"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(o.err == "gradformer-train: warning: --overwrite: removed 2 step checkpoint(s) of another run from " + out +
                 ": step-000003.safetensors, step-000004.safetensors\n");
  CHECK(step_files(out) == std::vector<std::string>{"step-000001.safetensors", "step-000002.safetensors",
                                                    "step-000009.safetensors"});

  // Averaging checkpoints of two runs, and one file twice: done, with a warning each.
  const std::string averaged = dir.str("averaged.safetensors");
  o = run("gradformer-average", {"--output", averaged, out + "/step-000001.safetensors",
                                 out + "/step-000002.safetensors", dir.str("old-step-4.safetensors"),
                                 dir.str("cc1/../cc1/step-000002.safetensors")});
  CHECK(o.exit_code == 0);
  CHECK(count_lines_containing(o.err, "gradformer-average: warning: the inputs come from 2 different training runs "
                                      "(run ids ") == 1);
  CHECK(count_lines_containing(o.err, "gradformer-average: warning: " + dir.str("cc1/../cc1/step-000002.safetensors") +
                                      " is the same file as " + out + "/step-000002.safetensors: it counts twice "
                                      "in the mean") == 1);
}

TEST_CASE("programs: gradformer-translate never writes over its checkpoint, input or reference") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string checkpoint = dir.str("model.safetensors"), input = dir.str("in.txt"), reference = dir.str("ref.txt");
  fs::copy_file(t.checkpoint, checkpoint);
  fs::create_directories(dir.str("sub"));
  fs::create_symlink(checkpoint, dir.str("link.safetensors"));
  write_file(input, "a b c\n");
  write_file(reference, "c b a\n");
  const std::string before = read_file(checkpoint);
  const std::vector<std::string> base{"--checkpoint", checkpoint, "--input", input, "--reference", reference};
  const std::vector<std::pair<std::string, std::string>> cases{
      {"--output", checkpoint},
      {"--output", dir.str("sub/../model.safetensors")},
      {"--output", dir.str("link.safetensors")},
      {"--attention-svg", checkpoint},
      {"--output", input},
      {"--output", reference}};
  for (const auto& [flag, path] : cases) {
    CAPTURE(path);
    const Outcome o = run("gradformer-translate", base + std::vector<std::string>{flag, path});
    CHECK(o.exit_code == 1);
    const std::string named = path == input ? input : path == reference ? reference : checkpoint;
    CHECK(o.err == "gradformer-translate: error: " + flag + " " + path + ": is the same file as the input " + named +
                   "; gradformer-translate never writes over what it reads\n");
  }
  CHECK(read_file(checkpoint) == before);
  CHECK(read_file(input) == "a b c\n");
  CHECK(read_file(reference) == "c b a\n");
}

TEST_CASE("programs: a checkpoint's config is checked against its tensors before a model is built") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string path = dir.str("edited.safetensors");
  const std::vector<std::pair<std::string, nlohmann::json>> edits{
      {"layers", 1000000}, {"layers", 3000}, {"d_model", int64_t{1} << 40}, {"vocab_size", 400000},
      {"max_length", 1000000000}, {"d_ff", 100000}};
  for (const auto& [field, value] : edits) {
    CAPTURE(field);
    CAPTURE(value.dump());
    fs::copy_file(t.checkpoint, path, fs::copy_options::overwrite_existing);
    edit_metadata(path, [&](nlohmann::json& config, nlohmann::json&) { config[field] = value; });
    const Outcome translated = run("gradformer-translate", {"--checkpoint", path}, "a b\n");
    CHECK(translated.exit_code == 1);
    CHECK(translated.err.size() < 1000);
    const Outcome resumed = run("gradformer-train", {"--resume", path, "--out", dir.str("resumed"), "--max-steps", "1"});
    CHECK(resumed.exit_code == 1);
    const bool out_of_range = value.get<int64_t>() > (int64_t{1} << 20);
    const std::string expected = fmt::format("{}: the configuration's '{}' is {}{}", path, field, value.dump(),
                                             out_of_range ? "; a size must be an integer in 1..1048576" : ", but ");
    CHECK(translated.err.starts_with("gradformer-translate: error: " + expected));
    CHECK(resumed.err.starts_with("gradformer-train: error: " + expected));
    CHECK_FALSE(fs::exists(dir.str("resumed")));
  }
}

TEST_CASE("programs: SIGHUP stops gradformer-translate as SIGTERM does, keeping --output and no temporary file") {
  const Trained& t = trained();
  const TempDir dir;
  write_file(dir.str("in.txt"), many_sentences(4000));
  const std::string output = dir.str("out.txt");
  Running translate("gradformer-translate", {"--checkpoint", t.checkpoint, "--input", dir.str("in.txt"), "--output",
                                             output, "--batch", "1"});
  REQUIRE(wait_for([&] { return temporary_size(dir.str()) > 0; }));
  translate.signal(SIGHUP);
  CHECK(translate.wait() == 128 + SIGHUP);
  INFO(translate.err());
  CHECK(translate.err().find("gradformer-translate: interrupted after ") != std::string::npos);
  CHECK(fs::exists(output));
  CHECK(temporaries_in(dir.str()) == 0);
}

TEST_CASE("programs: a closed stdout does not stop gradformer-train; SIGHUP stops it as SIGTERM does; one run per --out") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  // `gradformer-train ... | head -0`: the reader is gone before the first line.
  int pipe_ends[2];
  REQUIRE(::pipe(pipe_ends) == 0);
  ::close(pipe_ends[0]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_ends[1], 1);
  posix_spawn_file_actions_addopen(&actions, 2, dir.str("err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const pid_t pid = spawn_program("gradformer-train", stepping_run(tsv, dir.str("run"), 60, 0, 20), actions);
  ::close(pipe_ends[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  INFO(read_file(dir.str("err")));
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(nn::read_checkpoint_config(dir.str("run/last.safetensors")).state.step == 60);
  CHECK(read_file(dir.str("run/train.log")).find("stopped: step limit after 60 steps") != std::string::npos);

  // SIGHUP (the terminal closed): the step under way is finished, `last` written, exit 129.
  Running train("gradformer-train", stepping_run(tsv, dir.str("hup"), 100000, 0, 0));
  REQUIRE(wait_for([&] { return read_file(dir.str("hup/train.log")).find("model ") != std::string::npos; }));
  // One run per directory: a second is refused while the first holds DIR/.lock.
  const Outcome second = run("gradformer-train", stepping_run(tsv, dir.str("hup"), 5, 0, 0));
  CHECK(second.exit_code == 1);
  CHECK(second.err.starts_with("gradformer-train: error: " + dir.str("hup") + ": another training run (pid "));
  CHECK(second.err.ends_with(" is using this directory (" + dir.str("hup") + "/.lock is locked); wait for it to "
                             "end, or choose another --out\n"));
  train.signal(SIGHUP);
  CHECK(train.wait() == 128 + SIGHUP);
  CHECK_FALSE(fs::exists(dir.str("hup/.lock")));  // the lock goes with its run
  CHECK(train.err().find("gradformer-train: interrupted at step ") != std::string::npos);
  CHECK(nn::read_checkpoint_config(dir.str("hup/last.safetensors")).state.step > 0);
  CHECK(temporaries_in(dir.str("hup")) == 0);
}

TEST_CASE("programs: two gradformer-average runs on one new --output: one writes it, the other fails") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string output = dir.str("averaged.safetensors");
  Running first("gradformer-average", {"--output", output, t.checkpoint, t.checkpoint, t.checkpoint});
  Running second("gradformer-average", {"--output", output, t.checkpoint, t.checkpoint, t.checkpoint});
  const int a = first.wait(), b = second.wait();
  INFO(std::string(first.err() + second.err()));
  CHECK(((a == 0 && b == 1) || (a == 1 && b == 0)));
  const std::string failure = a == 1 ? first.err() : second.err();
  CHECK((failure.ends_with(output + ": already exists; pass --overwrite to replace it\n") ||
         failure.ends_with(output + ": already exists\n") ||
         failure.ends_with(output + ": was created by another process while this one wrote it; it is left as that "
                                    "process wrote it\n")));
  CHECK(nn::read_checkpoint_config(output).state.step > 0);
  CHECK(temporaries_in(dir.str()) == 0);

  // A signal while it works leaves no temporary file, whenever it comes (40 inputs: about a second of work).
  std::vector<std::string> args{"--output", output, "--overwrite"};
  args.insert(args.end(), 40, t.checkpoint);
  int interrupted = 0;
  for (int delay_ms : {0, 200, 400, 700}) {
    CAPTURE(delay_ms);
    Running averaging("gradformer-average", args);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    averaging.signal(SIGTERM);
    const int code = averaging.wait();
    // -1: ended by the signal itself, before the handler was installed (and before any file was opened).
    CHECK((code == 0 || code == 128 + SIGTERM || code == -1));
    if (code == 128 + SIGTERM) {
      ++interrupted;
      CHECK(averaging.err().ends_with("gradformer-average: interrupted; no output was written\n"));
    }
    CHECK(temporaries_in(dir.str()) == 0);
  }
  CHECK(interrupted > 0);
}

TEST_CASE("programs: a diverged run stops with exit 1 and says so; a capped perplexity is marked; --lr-factor 0 warns") {
  const TempDir dir;
  Outcome o = run("gradformer-train", {"--task", "copy", "--out", dir.str("diverged"), "--max-steps", "40",
                                       "--valid-every", "2", "--valid-bleu-sentences", "0", "--max-tokens", "256",
                                       "--lr-factor", "1e10"});
  INFO(o.out);
  INFO(o.err);
  CHECK(o.exit_code == 1);
  CHECK(count_lines_containing(o.err, "gradformer-train: error: train: step ") == 1);
  CHECK(count_lines_containing(o.err, "training diverged: the validation loss") == 1);
  CHECK(count_lines_containing(o.err, "lower --lr-factor (or raise --warmup)") == 1);
  CHECK(o.out.find("ppl >5.2e+21") != std::string::npos);
  CHECK(o.out.find(" BLEU ") == std::string::npos);  // --valid-bleu-sentences 0: no BLEU measured, none printed

  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, small_corpus());
  o = run("gradformer-train", quick_train(tsv, dir.str("still")) + std::vector<std::string>{"--lr-factor", "0"});
  CHECK(o.exit_code == 0);
  CHECK(o.err == "gradformer-train: warning: --lr-factor 0 makes every learning rate 0: the weights will not change\n");
}

TEST_CASE("programs: a resume keeps --keep-last; a refused resume leaves nothing; odd --out and seeds are refused") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv"), out = dir.str("run");
  write_file(tsv, small_corpus());
  REQUIRE(run("gradformer-train", stepping_run(tsv, out, 3, 1)).exit_code == 0);
  std::vector<std::string> resume = stepping_run(tsv, out, 6, 1);
  resume.resize(resume.size() - 2);  // no --keep-last: the checkpoint's is kept
  resume.insert(resume.end(), {"--resume", out + "/last.safetensors"});
  Outcome o = run("gradformer-train", resume);
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  CHECK(step_files(out) == std::vector<std::string>{"step-000006.safetensors"});

  // A refused resume into a new --out: no directory, no .lock, no train.log.
  fs::copy_file(out + "/last.safetensors", dir.str("broken.safetensors"));
  edit_metadata(dir.str("broken.safetensors"), [](nlohmann::json& config, nlohmann::json&) { config["layers"] = 9; });
  o = run("gradformer-train", {"--resume", dir.str("broken.safetensors"), "--out", dir.str("fresh")});
  CHECK(o.exit_code == 1);
  CHECK_FALSE(fs::exists(dir.str("fresh")));
  CHECK_FALSE(fs::exists(out + "/.lock"));

  // An --out too long for the files it would hold, refused before anything is read.
  const std::string deep = dir.str(std::string(4075 - dir.str().size(), 'd'));
  o = run("gradformer-train", quick_train(tsv, deep));
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-train: error: --out: the directory's path is "));

  // A std::filesystem failure reads like every other file error.
  o = run("gradformer-train", {"--task", "copy", "--write-data", "/proc/gradformer-no-such-dir"});
  CHECK(o.exit_code == 1);
  CHECK(o.err.find("filesystem error") == std::string::npos);
  CHECK(o.err.starts_with("gradformer-train: error: /proc/gradformer-no-such-dir: "));

  o = run("gradformer-gradcheck", {"--seed", "-1"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-gradcheck: error: --seed: expected an integer in [0, 18446744073709551615], got '-1' "
                 "(see --help)\n");
}

TEST_CASE("programs: SIGINT during gradformer-train's test translation ends it at once, saying what is kept") {
  const TempDir dir;
  const std::string out = dir.str("run");
  Running train("gradformer-train", {"--task", "copy", "--out", out, "--max-steps", "1", "--valid-every", "0",
                                     "--max-tokens", "256", "--test-beam", "256"});
  REQUIRE(wait_for([&] { return read_file(out + "/train.log").find("stopped: step limit") != std::string::npos; }));
  train.signal(SIGINT);
  CHECK(train.wait() == 130);
  CHECK(train.err().find("gradformer-train: interrupted after training; its checkpoints in " + out +
                         " are complete (score them with gradformer-translate --reference)\n") !=
        std::string::npos);
  CHECK(nn::read_checkpoint_config(out + "/last.safetensors").state.step == 1);
}

TEST_CASE("programs: --spm-model must be a regular .model file; the vocabulary counts only the tokens kept") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(dir.str("empty.model"), "");
  write_file(tsv, small_corpus());
  const std::vector<std::pair<std::string, std::string>> cases{
      {dir.str(), "is a directory, not a SentencePiece .model file"},
      {"/dev/null", "is not a regular file (a device or FIFO), so not a SentencePiece .model file"},
      {"/dev/zero", "is not a regular file (a device or FIFO), so not a SentencePiece .model file"},
      {dir.str("empty.model"), "is empty, not a SentencePiece .model file"}};
  for (const auto& [path, reason] : cases) {
    const Outcome o = run("gradformer-train", quick_train(tsv, dir.str("run")) +
                                                  std::vector<std::string>{"--tokenizer", "spm", "--spm-model", path});
    CHECK(o.exit_code == 1);
    CHECK(o.err == "gradformer-train: error: --spm-model " + path + ": " + reason + "\n");
    CHECK_FALSE(fs::exists(dir.str("run")));
  }

  // One line of 2,000 distinct words, in the training split, cut to 4 tokens: 4 of its words enter the vocabulary.
  std::string long_line;
  for (int i = 0; i < 2000; ++i) long_line += fmt::format("{}w{}", i ? " " : "", i);
  std::string suffix;
  while (data::fnv1a64(long_line + suffix) % 100 < 2) suffix += " x";  // buckets 0 and 1 are validation and test
  write_file(tsv, small_corpus() + long_line + suffix + "\t" + long_line + suffix + "\n");
  const Outcome o = run("gradformer-train", quick_train(tsv, dir.str("cut")) +
                                                std::vector<std::string>{"--max-sentence-tokens", "4"});
  REQUIRE_MESSAGE(o.exit_code == 0, o.err);
  // The 12 letters of the corpus, w0..w3, and the four special tokens.
  CHECK(o.out.find("tokenizer, vocabulary 20\n") != std::string::npos);
}

}  // TEST_SUITE
