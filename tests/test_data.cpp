// Corpora: the TSV reader and writer, the copy/reverse tasks, the German grammar task, the Ding dictionary
// extraction and length-bucketed batching (models/data/corpus.h, grammar.h, ding.h, batching.h).
#include "models/data/batching.h"
#include "models/data/corpus.h"
#include "models/data/ding.h"
#include "models/data/grammar.h"
#include "models/task.h"

#include "autograd/error.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
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

TEST_CASE("parse_tsv: a byte-order mark is dropped; invalid UTF-8 names file, line and byte, or is skipped") {
  const auto pairs = read_tsv_from_string("\xEF\xBB\xBFHallo Welt\thello world\n");
  REQUIRE(pairs.size() == 1);
  CHECK(pairs[0] == SentencePair{"Hallo Welt", "hello world"});
  // Only at the very start: a BOM inside the text is a character like any other (U+FEFF).
  CHECK(read_tsv_from_string("a\tb\n\xEF\xBB\xBF" "c\td\n")[1].source == "\xEF\xBB\xBF" "c");

  const std::string latin1 = "gut\tgood\nGr\xFC\xDF" "e\tgreetings\n\xC3\tx\n";
  CHECK_THROWS_WITH_AS(parse_tsv(latin1, "corpus.tsv"),
                       "corpus.tsv: line 2: not valid UTF-8 (byte 0xfc at byte 3 of the line); convert the file to "
                       "UTF-8, or skip such lines with --skip-bad-lines",
                       FormatError);
  TsvOptions options;
  options.skip_bad_lines = true;
  TsvReport report;
  const auto kept = parse_tsv(latin1, "corpus.tsv", options, &report);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0] == SentencePair{"gut", "good"});
  CHECK(report.skipped_bad == 2);
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

namespace {

// The tokens from a German subordinating conjunction at `start` to the finite verb that closes its clause,
// stepping over relative clauses (", der ... ,") and counting the distance; 0 when the clause is not closed.
size_t distance_to_clause_verb(const std::vector<std::string>& target, size_t start) {
  for (size_t i = start + 1; i < target.size(); ++i) {
    const bool relative_opens = target[i] == "," && i + 1 < target.size() &&
                                (target[i + 1] == "der" || target[i + 1] == "die" || target[i + 1] == "das") &&
                                std::isupper(static_cast<unsigned char>(target[i - 1][0]));
    if (relative_opens) {
      i = std::find(target.begin() + i + 1, target.end(), ",") - target.begin();
      continue;
    }
    if (target[i] == "," || target[i] == ".") return i - 1 - start;
  }
  return 0;
}

}  // namespace

TEST_CASE("grammar-long task: deterministic, disjoint, nested prefixes, relative clauses between subject and verb") {
  const Splits splits = make_grammar_long_task(1, 2000, 200, 200);
  CHECK(splits.train.size() == 2000);
  CHECK(splits.valid.size() == 200);
  CHECK(splits.test.size() == 200);
  check_disjoint(splits);
  CHECK(make_grammar_long_task(1, 2000, 200, 200).train == splits.train);
  CHECK(make_grammar_long_task(2, 2000, 200, 200).train != splits.train);
  // The training split is drawn first, so a smaller one is the start of a larger one: nested study subsets.
  const Splits smaller = make_grammar_long_task(1, 500, 200, 200);
  CHECK(std::equal(smaller.train.begin(), smaller.train.end(), splits.train.begin()));

  size_t long_distance = 0, longest = 0;
  for (const auto& pair : splits.train) {
    const auto source = split_whitespace(pair.source);
    const auto target = split_whitespace(pair.target);
    CHECK(source.size() >= 12);
    CHECK(source.size() <= kGrammarLongMaxTokens);
    CHECK(target.size() <= kGrammarLongMaxTokens);
    CHECK(target.back() == ".");
    CHECK((pair.source.find(" who ") != std::string::npos || pair.source.find(" which ") != std::string::npos));
    size_t farthest = 0;
    for (size_t i = 0; i < target.size(); ++i) {
      if (target[i] == "dass" || target[i] == "weil" || target[i] == "obwohl" || target[i] == "während")
        farthest = std::max(farthest, distance_to_clause_verb(target, i));
    }
    long_distance += farthest >= 10;
    longest = std::max(longest, farthest);
  }
  // Most sentences hold a subordinate clause whose verb comes ten or more tokens after its conjunction.
  CHECK(long_distance > splits.train.size() * 8 / 10);  // 1,746 of these 2,000 when written
  CHECK(longest >= 20);
  const std::vector<std::string> names = models::task_names();
  CHECK(std::find(names.begin(), names.end(), "grammar-long") != names.end());
}

TEST_CASE("grammar-long task: the first draws of seed 1, checked by hand") {
  // Pins the draw order; read by hand: the verb closes each subordinate clause after the relative clause
  // ("dass die Väter , die vor dem leeren Buch sitzen , die große Tomate genommen haben") and agrees with its
  // subject across it.
  const std::vector<SentencePair> expected{
      {"a teacher who cries on a long sofa has known that the strange kings who have gone to my bed think that the "
       "grandfather follows the sad cows .",
       "ein Lehrer , der auf einem langen Sofa weint , hat gewusst , dass die seltsamen Könige , die zu meinem Bett "
       "gegangen sind , denken , dass der Großvater den traurigen Kühen folgt ."},
      {"the grandfather hopes that the kings hope that my strange woman believes that the drivers who know my happy "
       "friend have sung .",
       "der Großvater hofft , dass die Könige hoffen , dass meine seltsame Frau glaubt , dass die Fahrer , die meinen "
       "glücklichen Freund kennen , gesungen haben ."},
      {"the sad mother who helps these wolves says that the fathers who sit in front of the empty book have taken the "
       "big tomato .",
       "die traurige Mutter , die diesen Wölfen hilft , sagt , dass die Väter , die vor dem leeren Buch sitzen , die "
       "große Tomate genommen haben ."},
  };
  Generator gen(1);
  for (const SentencePair& pair : expected) CHECK(make_grammar_long_pair(gen) == pair);
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

TEST_CASE("Ding: annotation stripping on hand-written lines") {
  CHECK(strip_ding_annotations("Aal {m} (auf der Speisekarte) [cook.]") == "Aal");
  CHECK(strip_ding_annotations("to rig out <> sb. in sth. [dated]") == "to rig out sb. in sth.");
  CHECK(strip_ding_annotations("Come for a visit when you are able (to).") == "Come for a visit when you are able.");
  CHECK(strip_ding_annotations("Herzindex {m} /HI/ [med.]") == "Herzindex");
  CHECK(strip_ding_annotations("a (nested [note] here) b") == "a b");
  CHECK(strip_ding_annotations("unclosed (note runs to the end") == "unclosed");
  CHECK(strip_ding_annotations("stray ) closer") == "stray ) closer");

  const auto pairs = parse_ding_line(
      "Aalsuppe {f} [cook.] | Aalsuppen {pl}; Suppen vom Aal | Er isst gern Aalsuppe. :: "
      "eel soup | eel soups; soups of eel | He likes eel soup.");
  REQUIRE(pairs.size() == 3);
  CHECK(pairs[0] == DingPair{"Aalsuppe", "eel soup"});
  CHECK(pairs[1] == DingPair{"Aalsuppen", "eel soups"});  // first synonym of each side
  CHECK(pairs[2] == DingPair{"Er isst gern Aalsuppe.", "He likes eel soup."});
  // A "; " inside an annotation does not split synonyms.
  CHECK(parse_ding_line("Aale {pl} (Anguilliformes; Ordnung) :: eels (order; zool.)") ==
        std::vector<DingPair>{{"Aale", "eels"}});
  CHECK(parse_ding_line("# Version :: devel").empty());
  CHECK(parse_ding_line("a | b :: only one").empty());  // misaligned
  CHECK(parse_ding_line("no separator").empty());
  CHECK(parse_ding_line("{x} :: y").empty());  // strips to nothing on one side

  Generator gen(21);
  for (int round = 0; round < 3000; ++round) {
    std::string bytes(gen.below(60), '\0');
    for (char& c : bytes) c = gen.below(2) == 0 ? " :|;{}[]()<>/#."[gen.below(15)] : static_cast<char>(gen.below(256));
    for (const DingPair& pair : parse_ding_line(bytes)) CHECK_FALSE((pair.german.empty() || pair.english.empty()));
  }
}

TEST_CASE("Ding: selection rules on a small in-memory dictionary") {
  const std::string text =
      "# comment :: line\n"
      "Hund {m} | Der Hund schläft. | ein großer Hund :: dog | The dog is sleeping. | a big dog\n"
      "Katze {f} | Die Katze schläft. :: cat | The cat is sleeping.\n"
      "etw. tun | Er tut etw. :: to do sth. | He does sth.\n"
      "Hund {m} | Der Hund bellt. :: dog | The dog is sleeping.\n"
      "a | b :: c\n";
  DingReport report;
  const Splits sentences = parse_ding(text, DingPart::sentences, &report);
  CHECK(report.lines == 6);
  CHECK(report.comments == 1);
  CHECK(report.misaligned == 1);
  CHECK(report.selected == 2);  // the placeholder sentence and the duplicated source are left out
  std::vector<SentencePair> all = sentences.train;
  all.insert(all.end(), sentences.valid.begin(), sentences.valid.end());
  all.insert(all.end(), sentences.test.begin(), sentences.test.end());
  CHECK(std::count(all.begin(), all.end(), SentencePair{"The dog is sleeping.", "Der Hund schläft."}) == 1);
  CHECK(std::count(all.begin(), all.end(), SentencePair{"The cat is sleeping.", "Die Katze schläft."}) == 1);

  const Splits phrases = parse_ding(text, DingPart::phrases, &report);
  std::vector<SentencePair> phrase_pairs = phrases.train;
  phrase_pairs.insert(phrase_pairs.end(), phrases.valid.begin(), phrases.valid.end());
  phrase_pairs.insert(phrase_pairs.end(), phrases.test.begin(), phrases.test.end());
  CHECK(phrase_pairs.size() == 2);
  CHECK(std::count(phrase_pairs.begin(), phrase_pairs.end(), SentencePair{"a big dog", "ein großer Hund"}) == 1);
  CHECK(std::count(phrase_pairs.begin(), phrase_pairs.end(), SentencePair{"to do sth.", "etw. tun"}) == 1);
}

TEST_CASE("Ding: the installed dictionary gives stable, disjoint splits of plausible size") {
  const std::string path = "/usr/share/trans/de-en";
  CHECK_THROWS_WITH_AS(load_ding("/nonexistent/de-en"),
                       doctest::Contains("ding /nonexistent/de-en: cannot open for reading"), IOError);
  CHECK_THROWS_WITH_AS(load_ding("/nonexistent/de-en"), doctest::Contains("apt-get install trans-de-en"), IOError);
  if (!std::filesystem::exists(path)) {
    MESSAGE(path, " is missing (apt-get install trans-de-en): skipping the checks on the real dictionary");
    return;
  }
  DingReport report;
  const Splits sentences = load_ding(path, DingPart::sentences, &report);
  const size_t total = sentences.train.size() + sentences.valid.size() + sentences.test.size();
  MESSAGE("Ding sentences: ", total, " (train ", sentences.train.size(), ", valid ", sentences.valid.size(),
          ", test ", sentences.test.size(), ") from ", report.lines, " lines");
  CHECK(total > 12000);
  CHECK(total < 22000);
  CHECK(sentences.valid.size() > total / 200);
  CHECK(sentences.valid.size() < total / 50);
  CHECK(sentences.test.size() > total / 200);
  CHECK(sentences.test.size() < total / 50);
  check_disjoint(sentences);
  for (const auto& pair : sentences.train) {
    CHECK(pair.source.find_first_of("{}[]<>") == std::string::npos);
    CHECK(pair.target.find_first_of("{}[]<>") == std::string::npos);
  }
  const Splits again = load_ding(path, DingPart::sentences);
  CHECK(again.train == sentences.train);
  CHECK(again.valid == sentences.valid);
  CHECK(again.test == sentences.test);

  const Splits phrases = load_ding(path, DingPart::phrases);
  const size_t phrase_total = phrases.train.size() + phrases.valid.size() + phrases.test.size();
  MESSAGE("Ding phrases: ", phrase_total);
  CHECK(phrase_total > 55000);
  CHECK(phrase_total < 95000);
  check_disjoint(phrases);
}
