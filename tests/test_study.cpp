// examples/study.sh on tiny settings (the copy task, two sizes, one seed, two steps, two models): the runs are
// trained, their scores collected into results.tsv and results.md, and study.svg is a well-formed plot with one
// line per model. The full study takes hours; this checks the code paths it goes through.
#include "tests/program_helpers.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

using namespace gradformer::testing;

namespace {

// run() starts programs from the build's examples directory; the script lives in the source tree.
std::string study_script() { return std::filesystem::relative(GRADFORMER_STUDY_SCRIPT, kPrograms).string(); }

std::vector<std::string> tiny_study(const std::string& out) {
  return {"--task", "copy", "--sizes", "50 200", "--models", "rnn-attention transformer-tiny", "--seeds", "1",
          "--budget-steps", "2", "--jobs", "2", "--out", out, "--programs", kPrograms, "--train-args",
          "--max-tokens 256 --valid-every 0"};
}

std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, '\t')) fields.push_back(field);
  return fields;
}

// Every opening tag closed in order, or self-closing; returns the first mismatch, empty when balanced.
std::string unbalanced_tag(const std::string& svg) {
  const std::regex tag(R"(<(/?)([a-zA-Z]+)[^>]*?(/?)>)");
  std::vector<std::string> open;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator(); ++it) {
    const std::smatch& match = *it;
    if (match[3].length() > 0) continue;
    if (match[1].length() == 0) {
      open.push_back(match[2]);
    } else if (open.empty() || open.back() != match[2]) {
      return match.str();
    } else {
      open.pop_back();
    }
  }
  return open.empty() ? "" : "<" + open.back() + "> never closed";
}

}  // namespace

TEST_CASE("study.sh: trains every model on every size, writes the tables and a well-formed plot, resumes") {
  if (!kProgramsBuilt) return;
  const TempDir dir("gradformer-test-study");
  const std::string out = dir.str("study");
  const Outcome outcome = run(study_script(), tiny_study(out));
  REQUIRE_MESSAGE(outcome.exit_code == 0, outcome.err);

  const std::string table = read_file(out + "/results.tsv");
  const std::vector<std::string> rows = lines_of(table);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == "model\tpairs\tseed\tsteps\tminutes\tthreads\tbleu\tchrf");
  const std::vector<std::pair<std::string, std::string>> runs{
      {"rnn-attention", "50"}, {"rnn-attention", "200"}, {"transformer-tiny", "50"}, {"transformer-tiny", "200"}};
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::vector<std::string> fields = fields_of(rows[i + 1]);
    REQUIRE(fields.size() == 8);
    CHECK(fields[0] == runs[i].first);
    CHECK(fields[1] == runs[i].second);
    CHECK(fields[2] == "1");
    CHECK(fields[3] == "2");  // the step budget
    CHECK(std::stod(fields[4]) > 0);
    CHECK(fields[5] == "1");  // the threads program_command gives every program
    for (const std::string& score : {fields[6], fields[7]}) {
      CHECK(std::stod(score) >= 0);
      CHECK(std::stod(score) <= 100);
    }
    // The score is the run's own: its train.log says the same.
    const std::string log = read_file(fmt::format("{}/runs/{}-p{}-s1/train.log", out, runs[i].first, runs[i].second));
    CHECK(log.find(fmt::format("test BLEU = {}", fields[6])) != std::string::npos);
  }

  const std::string markdown = read_file(out + "/results.md");
  CHECK(count_lines_containing(markdown, "| rnn-attention | 50 | 1 | 2 |") == 1);
  CHECK(count_lines_containing(markdown, "| transformer-tiny | 200 | 1 | 2 |") == 1);
  // The summary: one row per model and size, the seeds' mean ± half their spread, then min–max.
  size_t summary_rows = 0;
  for (const std::string& line : lines_of(markdown)) summary_rows += line.starts_with("| ") && line.find(" ± ") != line.npos;
  CHECK(summary_rows == 4);

  const std::string svg = read_file(out + "/study.svg");
  CHECK(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  CHECK(unbalanced_tag(svg) == "");
  CHECK(count_lines_containing(svg, "<polyline") == 2);
  CHECK(count_lines_containing(svg, ">rnn-attention</text>") == 1);
  CHECK(count_lines_containing(svg, ">transformer-tiny</text>") == 1);

  // The same command again trains nothing: every run finished, so an interrupted study resumes where it stopped.
  const Outcome again = run(study_script(), tiny_study(out));
  REQUIRE_MESSAGE(again.exit_code == 0, again.err);
  CHECK(count_lines_containing(again.out, "finished earlier, kept") == 4);
  CHECK(read_file(out + "/results.tsv") == table);
}

TEST_CASE("study.sh: --budget-minutes on the CPU clock stops every run on its time limit") {
  if (!kProgramsBuilt) return;
  const TempDir dir("gradformer-test-study-cpu");
  const std::string out = dir.str("study");
  const Outcome outcome =
      run(study_script(), {"--task", "copy", "--sizes", "50", "--models", "transformer-tiny", "--seeds", "1",
                           "--budget-minutes", "0.005", "--budget-clock", "cpu", "--out", out, "--programs",
                           kPrograms, "--train-args", "--max-tokens 256 --valid-every 0"});
  REQUIRE_MESSAGE(outcome.exit_code == 0, outcome.err);
  CHECK(read_file(out + "/runs/transformer-tiny-p50-s1/train.log").find("time limit") != std::string::npos);
  CHECK(read_file(out + "/results.md").find("budget 0.005 CPU minutes per run") != std::string::npos);

  const Outcome bad = run(study_script(), {"--out", dir.str("bad"), "--programs", kPrograms, "--budget-minutes", "1",
                                           "--budget-clock", "sundial"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--budget-clock 'sundial' is neither wall nor cpu") != std::string::npos);
}

TEST_CASE("study.sh: a size above the task's training split trains on all of it, and the table says how many") {
  if (!kProgramsBuilt) return;
  const TempDir dir("gradformer-test-study-all");
  const std::string out = dir.str("study");
  const Outcome outcome =
      run(study_script(), {"--task", "copy", "--sizes", "30000", "--models", "transformer-tiny", "--seeds", "1",
                           "--budget-steps", "1", "--out", out, "--programs", kPrograms, "--train-args",
                           "--max-tokens 256 --valid-every 0"});
  REQUIRE_MESSAGE(outcome.exit_code == 0, outcome.err);
  CHECK(outcome.out.find("copy has 20000 training pairs, so the 30000-pair subset is all of them") != std::string::npos);
  CHECK(read_file(out + "/runs/transformer-tiny-p30000-s1/study.row").rfind("transformer-tiny\t20000\t1\t1\t", 0) == 0);
}

TEST_CASE("study.sh: a command without a budget, or with both, stops before training and says why") {
  if (!kProgramsBuilt) return;
  const TempDir dir("gradformer-test-study-flags");
  const Outcome none = run(study_script(), {"--out", dir.str("none"), "--programs", kPrograms});
  CHECK(none.exit_code == 2);
  CHECK(none.err.find("give a budget") != std::string::npos);
  const Outcome both = run(study_script(), {"--out", dir.str("both"), "--programs", kPrograms, "--budget-steps", "5",
                                            "--budget-minutes", "1"});
  CHECK(both.exit_code == 2);
  CHECK(both.err.find("not both") != std::string::npos);
  CHECK(!std::filesystem::exists(dir.str("both")));
}
