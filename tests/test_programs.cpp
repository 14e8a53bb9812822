// The programs' answers to bad input, run as a user runs them (tests/program_helpers.h): the test checks the
// exit status and the one line each prints ("gradformer-xxx: error: ..."), and that no checkpoint was lost.
// gradformer-translate's streaming and output files are tested in test_programs_translate.cpp.
#include "models/task.h"
#include "models/trainer.h"
#include "models/zoo.h"
#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

using namespace gradformer;
using namespace gradformer::testing;

namespace {

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
       "gradformer-train: error: task: unknown task 'nope' (known: grammar, grammar-long, ding-sentences, "
       "ding-phrases, copy, reverse, tsv:PATH)"},
      {{"--tokenizer", "morse"}, 2, "gradformer-train: error: --tokenizer: morse not in {word,char,bpe,spm} (see --help)"},
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
      {{"--bucket-mb", "0"}, 2,
       "gradformer-train: error: --bucket-mb: expected a number in (0, 4096], got '0' (see --help)"},
      {{"--no-such-flag"}, 2,
       "gradformer-train: error: The following argument was not expected: --no-such-flag (see --help)"},
      {{"--budget-clock", "sundial"}, 2,
       "gradformer-train: error: --budget-clock: sundial not in {wall,cpu} (see --help)"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.args[0]);
    const Outcome o = run("gradformer-train", base + (c.args[0] == "--task" ? c.args : task + c.args));
    CHECK(o.exit_code == c.exit_code);
    CHECK(o.err == c.err + "\n");
  }
  CHECK_FALSE(std::filesystem::exists(dir.str("run/last.safetensors")));

  // The allocator's switch is read at the first allocation: a value other than 0 or 1 stops the program there.
  setenv("GRADFORMER_CACHING_ALLOCATOR", "2", 1);
  const Outcome bad_switch = run("gradformer-train", base + task);
  unsetenv("GRADFORMER_CACHING_ALLOCATOR");
  CHECK(bad_switch.exit_code == 1);
  CHECK(bad_switch.err == "gradformer-train: error: GRADFORMER_CACHING_ALLOCATOR: expected 0 (caching off) or 1 (on), got '2'\n");
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
  // Found in the header, before a model is built (models::check_config_fits).
  CHECK(o.err.starts_with("gradformer-translate: error: " + mismatched + ": the configuration's 'd_model' is 64, but "
                          "tensor 'source_embedding.weight' has shape ["));
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

TEST_CASE("programs: gradformer-gradcheck lists ops with their variants and checks all rows of an --only op") {
  Outcome o = run("gradformer-gradcheck", {"--list"});
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("\nsum: all, axes, keepdim\n") != std::string::npos);
  CHECK(o.out.find("\nmul: default, scalar\n") != std::string::npos);
  CHECK(o.out.find("\nto\n") != std::string::npos);  // an op with its plain call only
  CHECK(o.out.find("\nMultiheadAttention\n") != std::string::npos);
  o = run("gradformer-gradcheck", {"--only", "var", "--only", "logsumexp_keepdim"});
  CHECK(o.exit_code == 0);
  // 3 cases, contiguous and strided, for each of var_unbiased, var_biased and logsumexp_keepdim.
  CHECK(o.out.find("18 checks, 0 failed\n") != std::string::npos);
  CHECK(o.out.find("\nlogsumexp ") == std::string::npos);
}

TEST_CASE("programs: gradformer-gradcheck and gradformer-bench refuse unknown names and bad flag values") {
  Outcome o = run("gradformer-gradcheck", {"--only", "no-such-op"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-gradcheck: error: --only: unknown name 'no-such-op' (see --list); a layer of your own is "
                 "checked from your program with nn::gradcheck_module(module, fn, inputs), see "
                 "docs/writing-a-layer.md\n");
  o = run("gradformer-bench", {"--config", "huge"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-bench: error: --config: huge not in {toy,small,base} (see --help)\n");
  o = run("gradformer-bench", {"--steps", "-3"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-bench: error: --steps: expected an integer >= 0, got '-3' (see --help)\n");
  o = run("gradformer-bench", {"--bucket-mb", "0"});
  CHECK(o.exit_code == 2);
  CHECK(o.err == "gradformer-bench: error: --bucket-mb: expected a number in (0, 4096], got '0' (see --help)\n");
}

// 300 pairs over fifteen words, the target reversed: enough that the hashed split gives a few validation pairs.
std::string word_corpus() {
  const std::vector<std::string> words = {"the", "a", "dog", "cat", "sees", "runs", "house", "small", "big",
                                          "green", "old", "new", "man", "woman", "child"};
  std::string text;
  uint64_t state = 12345;  // a fixed LCG: 300 distinct sentences, so the hashed split holds validation pairs
  for (size_t i = 0; i < 300; ++i) {
    std::vector<std::string> sentence;
    for (size_t k = 0; k < 3 + i % 6; ++k) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      sentence.push_back(words[(state >> 33) % words.size()]);
    }
    text += fmt::format("{}\t{}\n", fmt::join(sentence, " "), fmt::join(sentence.rbegin(), sentence.rend(), " "));
  }
  return text;
}

TEST_CASE("programs: --tokenizer spm stores the SentencePiece model in the checkpoint; a corrupt .model changes nothing") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, word_corpus());
  Outcome o = run("gradformer-train", quick_train(tsv, dir.str("run")) +
                                          std::vector<std::string>{"--tokenizer", "spm", "--spm-vocab-size", "40"});
  INFO(o.err);
  REQUIRE(o.exit_code == 0);
  CHECK(o.out.find("spm tokenizer") != std::string::npos);
  const std::string checkpoint = dir.str("run/last.safetensors");
  CHECK(nn::read_checkpoint_config(checkpoint).config.at("codec").at("tokenizer").at("kind") == "spm");
  o = run("gradformer-translate", {"--checkpoint", checkpoint}, "the dog sees a cat\n\nold man\n");
  CHECK(o.exit_code == 0);
  CHECK(lines_of(o.out).size() == 3);

  const std::string corrupt = dir.str("corrupt.model");
  write_file(corrupt, "not a model");
  o = run("gradformer-train", quick_train(tsv, dir.str("other")) +
                                  std::vector<std::string>{"--tokenizer", "spm", "--spm-model", corrupt});
  CHECK(o.exit_code == 1);
  CHECK(o.err.starts_with("gradformer-train: error: " + corrupt + ": not a SentencePiece model (libsentencepiece: "));
  CHECK(lines_of(o.err).size() == 1);
  CHECK_FALSE(std::filesystem::exists(dir.str("other")));
  o = run("gradformer-train", quick_train(tsv, dir.str("other")) + std::vector<std::string>{"--spm-model", corrupt});
  CHECK(o.err == "gradformer-train: error: --spm-model " + corrupt + ": a SentencePiece model needs --tokenizer spm (the "
                 "tokenizer is word)\n");
  o = run("gradformer-train", quick_train(tsv, dir.str("other")) + std::vector<std::string>{"--spm-type", "char"});
  CHECK(o.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(dir.str("other")));
}

TEST_CASE("programs: --save-dtype bf16 writes best as a half-size decoding checkpoint; last stays f32 for --resume") {
  const TempDir dir;
  const std::string tsv = dir.str("corpus.tsv");
  write_file(tsv, word_corpus());
  const Outcome o = run("gradformer-train", {"--task", "tsv:" + tsv, "--out", dir.str("run"), "--max-steps", "2",
                                             "--valid-every", "1", "--valid-bleu-sentences", "0", "--max-tokens", "256",
                                             "--save-dtype", "bf16"});
  INFO(o.err);
  REQUIRE(o.exit_code == 0);
  const safetensors::File best = safetensors::load(dir.str("run/best.safetensors"));
  const safetensors::File last = safetensors::load(dir.str("run/last.safetensors"));
  size_t best_model_bytes = 0, last_model_bytes = 0;
  for (const auto& [name, record] : best.tensors) {
    CHECK_FALSE(name.starts_with("optimizer."));
    if (name.starts_with("training.")) continue;
    CHECK(record.dtype == safetensors::DType::BF16);
    best_model_bytes += record.data.size();
    last_model_bytes += last.tensors.at(name).data.size();
    CHECK(last.tensors.at(name).dtype == safetensors::DType::F32);
  }
  CHECK(2 * best_model_bytes == last_model_bytes);
  CHECK(last.metadata.contains("optimizer"));
  const Outcome translated = run("gradformer-translate", {"--checkpoint", dir.str("run/best.safetensors")}, "the dog\n");
  CHECK(translated.exit_code == 0);
  const std::string best_path = dir.str("run/best.safetensors");
  const Outcome resumed =
      run("gradformer-train", quick_train(tsv, dir.str("run")) + std::vector<std::string>{"--resume", best_path});
  CHECK(resumed.exit_code == 1);
  CHECK(resumed.err == "gradformer-train: error: " + best_path + ": checkpoint holds no optimizer state to load into the Adam "
                       "(a decoding checkpoint: BF16 or averaged); resume from a training checkpoint such as "
                       "last.safetensors, or pass no optimizer to start a fresh one\n");
}

TEST_CASE("programs: gradformer-average writes the mean, refuses other models, and never overwrites silently") {
  const Trained& t = trained();
  const TempDir dir;
  const std::string output = dir.str("avg.safetensors");
  Outcome o = run("gradformer-average", {"--output", output, t.checkpoint, t.checkpoint});
  INFO(o.err);
  REQUIRE(o.exit_code == 0);
  CHECK(o.out.starts_with("averaged "));
  CHECK(o.out.ends_with(" tensors over 2 checkpoints into " + output + "\n"));
  const safetensors::File averaged = safetensors::load(output), input = safetensors::load(t.checkpoint);
  for (const auto& [name, record] : averaged.tensors) {
    CHECK_FALSE(name.starts_with("optimizer."));
    CHECK(record == input.tensors.at(name));  // the mean of a model with itself is the model
  }
  o = run("gradformer-translate", {"--checkpoint", output}, "a b c\n");
  CHECK(o.exit_code == 0);

  const std::string before = read_file(output);
  o = run("gradformer-average", {"--output", output, t.checkpoint});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-average: error: " + output + ": already exists; pass --overwrite to replace it\n");
  CHECK(read_file(output) == before);
  o = run("gradformer-average", {"--output", t.checkpoint, "--overwrite", t.checkpoint, output});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-average: error: " + t.checkpoint + ": is also an input (" + t.checkpoint +
                     "); averaging never writes over an input\n");

  // A checkpoint of a narrower model with the same vocabulary: its config differs first.
  nlohmann::json config = nn::read_checkpoint_config(t.checkpoint).config;
  config["d_model"] = 32;
  nlohmann::json model_config = config;
  model_config.erase("codec");
  const auto narrow = models::make_model(model_config);
  nn::TrainingState state;
  state.generator = Generator(1).state();
  const std::string other = dir.str("narrow.safetensors");
  nn::save_checkpoint(other, *narrow, nullptr, state, config);
  const std::string refused = dir.str("refused.safetensors");
  o = run("gradformer-average", {"--output", refused, t.checkpoint, other});
  CHECK(o.exit_code == 1);
  CHECK(o.err == "gradformer-average: error: " + t.checkpoint + " and " + other +
                     " are checkpoints of different models: config key 'd_model' differs\n");
  CHECK_FALSE(std::filesystem::exists(refused));
  o = run("gradformer-average", {"--output", refused});
  CHECK(o.exit_code == 2);
  o = run("gradformer-average", {"--help"});
  CHECK(o.exit_code == 0);
  CHECK(o.out.find("--overwrite") != std::string::npos);
}

}  // TEST_SUITE
