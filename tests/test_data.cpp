// Corpora: the TSV reader and writer, the copy/reverse tasks, the German grammar task, the Ding dictionary
// extraction and length-bucketed batching (models/data/corpus.h, grammar.h, ding.h, batching.h).
#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/grammar.h"

#include "autograd/error.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>

using namespace gradformer;
using namespace gradformer::data;

namespace {

std::set<std::string> sources(const std::vector<SentencePair>& pairs) {
  std::set<std::string> out;
  for (const auto& pair : pairs) out.insert(pair.source);
  return out;
}

void check_disjoint(const Splits& splits) {
  const auto train = sources(splits.train), valid = sources(splits.valid), test = sources(splits.test);
  CHECK(train.size() == splits.train.size());
  CHECK(valid.size() == splits.valid.size());
  CHECK(test.size() == splits.test.size());
  for (const auto& s : valid) CHECK(train.count(s) == 0);
  for (const auto& s : test) CHECK((train.count(s) == 0 && valid.count(s) == 0));
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("gradformer-test-" + name)).string();
}

}  // namespace

TEST_CASE("parse_tsv: pairs, CRLF, empty lines and the line number of a bad line") {
  TsvReport report;
  const auto pairs = read_tsv_from_string("a b\tx y\r\n\n  \nc\td\n", {}, &report);
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0] == SentencePair{"a b", "x y"});
  CHECK(pairs[1] == SentencePair{"c", "d"});
  CHECK(report.lines == 4);
  CHECK(report.skipped_empty == 2);

  try {
    parse_tsv("a\tb\n\nno tab here\n", "corpus.tsv");
    FAIL("expected a FormatError");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()) == "corpus.tsv: line 3: expected source<TAB>target, found 0 tabs");
  }
  CHECK_THROWS_WITH_AS(parse_tsv("a\tb\tc", "x.tsv"), "x.tsv: line 1: expected source<TAB>target, found 2 tabs",
                       FormatError);
}

TEST_CASE("parse_tsv: skip_bad_lines and max_tokens are counted in the report") {
  TsvOptions options;
  options.skip_bad_lines = true;
  options.max_tokens = 2;
  TsvReport report;
  const auto pairs = parse_tsv("one two three\tx\nbad\n\tempty source\nfour\tfive six seven\n", "t", options, &report);
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0] == SentencePair{"one two", "x"});
  CHECK(pairs[1] == SentencePair{"four", "five six"});
  CHECK(report.lines == 4);
  CHECK(report.skipped_bad == 1);
  CHECK(report.skipped_empty == 1);
  CHECK(report.truncated == 2);
}

TEST_CASE("parse_tsv: arbitrary bytes never crash") {
  Generator gen(5);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(gen.below(64), '\0');
    for (char& c : bytes) c = static_cast<char>(gen.below(4) == 0 ? "\t\n\r "[gen.below(4)] : gen.below(256));
    TsvOptions options;
    options.skip_bad_lines = round % 2 == 0;
    options.max_tokens = gen.below(3);
    try {
      const auto pairs = parse_tsv(bytes, "fuzz", options);
      for (const auto& pair : pairs) CHECK(pair.source.find('\t') == std::string::npos);
    } catch (const FormatError&) {
      CHECK_FALSE(options.skip_bad_lines);
    }
  }
}

TEST_CASE("read_tsv / write_tsv: round trip, missing file, unwritable pair") {
  const std::string path = temp_path("roundtrip.tsv");
  const std::vector<SentencePair> pairs{{"the dog .", "der Hund ."}, {"größe", "ß ü"}};
  write_tsv(path, pairs);
  CHECK(read_tsv(path) == pairs);
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(read_tsv("/nonexistent/corpus.tsv"), "tsv /nonexistent/corpus.tsv: cannot open for reading",
                       IOError);
  CHECK_THROWS_AS(write_tsv(path, {{"a\tb", "c"}}), ValueError);
}

TEST_CASE("fnv1a64: reference values") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ULL);
}

TEST_CASE("copy and reverse tasks") {
  const Splits copy = make_copy_task(3, 300, 20, 20);
  CHECK(copy.train.size() == 300);
  CHECK(copy.valid.size() == 20);
  CHECK(copy.test.size() == 20);
  check_disjoint(copy);
  for (const auto& pair : copy.train) {
    CHECK(pair.source == pair.target);
    const auto tokens = split_whitespace(pair.source);
    CHECK(tokens.size() >= 3);
    CHECK(tokens.size() <= 10);
    for (const auto& token : tokens) {
      const int value = std::stoi(token);
      CHECK((value >= 1 && value <= 20));
    }
  }
  const Splits reverse = make_reverse_task(3, 100, 10, 10);
  check_disjoint(reverse);
  for (const auto& pair : reverse.train) {
    auto tokens = split_whitespace(pair.source);
    std::reverse(tokens.begin(), tokens.end());
    CHECK(tokens == split_whitespace(pair.target));
  }
  CHECK(make_copy_task(3, 300, 20, 20).train == copy.train);
  CHECK(make_copy_task(4, 300, 20, 20).train != copy.train);
}

TEST_CASE("draw_distinct_splits: a task too small for the request is a ValueError") {
  int next = 0;
  CHECK_THROWS_AS(draw_distinct_splits("tiny", [&] { return SentencePair{std::to_string(next++ % 3), "x"}; }, 5, 0, 0),
                  ValueError);
}

TEST_CASE("grammar task: deterministic, disjoint, 4..16 tokens, German word order and case") {
  const Splits splits = make_grammar_task(1, 3000, 200, 200);
  CHECK(splits.train.size() == 3000);
  check_disjoint(splits);
  const Splits again = make_grammar_task(1, 3000, 200, 200);
  CHECK(again.train == splits.train);
  CHECK(again.test == splits.test);
  CHECK(make_grammar_task(2, 3000, 200, 200).train != splits.train);

  size_t dative_articles = 0, subordinate = 0, perfect = 0, contractions = 0;
  for (const auto& pair : splits.train) {
    const auto source = split_whitespace(pair.source);
    const auto target = split_whitespace(pair.target);
    CHECK(source.size() >= 4);
    CHECK(source.size() <= 16);
    CHECK(target.size() >= 4);
    CHECK(target.size() <= 16);
    CHECK(source.back() == ".");
    CHECK(target.back() == ".");
    CHECK(std::none_of(pair.source.begin(), pair.source.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
    for (size_t i = 0; i + 1 < target.size(); ++i) {
      // A preposition's article is already fused where German fuses it.
      if (target[i] == "zu" || target[i] == "von" || target[i] == "in") CHECK(target[i + 1] != "dem");
      if (target[i] == "zu") CHECK(target[i + 1] != "der");
      if (target[i] == "mit" || target[i] == "aus") {
        const std::string& next = target[i + 1];
        CHECK((next == "dem" || next == "der" || next == "den" || next.starts_with("einem") ||
               next.starts_with("einer") || next == "meinem" || next == "meiner" || next == "meinen" ||
               next == "diesem" || next == "dieser" || next == "diesen"));
      }
      dative_articles += target[i] == "dem";
      contractions += target[i] == "zum" || target[i] == "zur" || target[i] == "vom" || target[i] == "im";
    }
    const bool has_clause = pair.source.find(" that ") != std::string::npos ||
                            pair.source.find(" because ") != std::string::npos ||
                            pair.source.find(" although ") != std::string::npos ||
                            pair.source.find(" while ") != std::string::npos;
    if (pair.source.find(" that ") != std::string::npos) {
      CHECK(pair.target.find(" , dass ") != std::string::npos);
      ++subordinate;
    }
    // A simple clause in the perfect ends with its participle: "... hat die Katze gesehen ."
    if (!has_clause && pair.source.find(" has seen ") != std::string::npos) {
      CHECK(target[target.size() - 2] == "gesehen");
      ++perfect;
    }
    // In a "that" clause in the present the finite verb comes last: "..., dass der Hund die Katze sieht ."
    if (pair.source.find(" that ") != std::string::npos && pair.source.ends_with(" sees the cat .")) {
      CHECK(target[target.size() - 2] == "sieht");
    }
  }
  CHECK(dative_articles > 100);
  CHECK(contractions > 50);
  CHECK(subordinate > 300);
  CHECK(perfect > 5);
}

TEST_CASE("grammar task: the first draws of seed 1, checked by hand") {
  // Pins the lexicon, the templates and the draw order: a change to any of them shows up here.
  const std::vector<SentencePair> expected{
      {"a teacher has known that my good small queen cries .",
       "ein Lehrer hat gewusst , dass meine gute kleine Königin weint ."},
      {"the strange kings dance in this warm blue room .", "die seltsamen Könige tanzen in diesem warmen blauen Zimmer ."},
      {"the fast tigers see the brown balls .", "die schnellen Tiger sehen die braunen Bälle ."},
      {"the friendly uncle runs .", "der freundliche Onkel läuft ."},
      {"this angry man loves my hungry grandmother .", "dieser wütende Mann liebt meine hungrige Großmutter ."},
  };
  Generator gen(1);
  for (const SentencePair& pair : expected) CHECK(make_grammar_pair(gen) == pair);
}

TEST_CASE("make_batches: every example once, budget respected, similar lengths together") {
  Generator lengths_gen(9);
  std::vector<size_t> source_lengths, target_lengths;
  for (int i = 0; i < 1000; ++i) {
    source_lengths.push_back(1 + lengths_gen.below(30));
    target_lengths.push_back(1 + lengths_gen.below(30));
  }
  source_lengths.push_back(500);  // longer than the whole budget: a batch of its own
  target_lengths.push_back(3);
  const size_t max_tokens = 200;
  Generator gen(1);
  const std::vector<Batch> batches = make_batches(source_lengths, target_lengths, max_tokens, gen, true);
  std::vector<int> seen(source_lengths.size(), 0);
  size_t padded = 0, real = 0;
  for (const Batch& batch : batches) {
    REQUIRE_FALSE(batch.indices.empty());
    size_t longest = 0;
    for (const size_t i : batch.indices) {
      ++seen[i];
      longest = std::max({longest, source_lengths[i], target_lengths[i]});
      real += target_lengths[i];
    }
    if (batch.indices.size() > 1) CHECK(batch.indices.size() * longest <= max_tokens);
    size_t longest_target = 0;
    for (const size_t i : batch.indices) longest_target = std::max(longest_target, target_lengths[i]);
    padded += longest_target * batch.indices.size();
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int count) { return count == 1; }));
  CHECK(static_cast<double>(padded) < 1.1 * static_cast<double>(real));  // bucketing keeps target padding low

  Generator same(1);
  const std::vector<Batch> again = make_batches(source_lengths, target_lengths, max_tokens, same, true);
  REQUIRE(again.size() == batches.size());
  for (size_t b = 0; b < batches.size(); ++b) CHECK(again[b].indices == batches[b].indices);

  Generator unused(1);
  const std::vector<Batch> sorted = make_batches(source_lengths, target_lengths, max_tokens, unused, false);
  for (size_t b = 1; b < sorted.size(); ++b) {
    CHECK(target_lengths[sorted[b - 1].indices.back()] <= target_lengths[sorted[b].indices.front()]);
  }
  CHECK_THROWS_AS(make_batches({1, 2}, {1}, 10, gen, true), ValueError);
  CHECK_THROWS_AS(make_batches({1}, {1}, 0, gen, true), ValueError);
  CHECK(make_batches({}, {}, 10, gen, true).empty());
}

TEST_CASE("pad_batch: row-major block padded to the longest sequence") {
  size_t max_len = 99;
  const auto block = pad_batch({{5, 6, 7}, {8}, {}}, 0, max_len);
  CHECK(max_len == 3);
  CHECK(block == std::vector<int64_t>{5, 6, 7, 8, 0, 0, 0, 0, 0});
  CHECK(pad_batch({}, 0, max_len).empty());
  CHECK(max_len == 0);
}
