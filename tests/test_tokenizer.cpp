// Vocabulary and the word, character, BPE and SentencePiece tokenisers (models/data/tokenizer.h): round trips,
// file formats, rejection of malformed files with file and line, and robustness against arbitrary bytes.
#include "models/data/tokenizer.h"

#include "autograd/error.h"
#include "models/data/grammar.h"

#include <doctest/doctest.h>

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

using namespace gradformer;
using namespace gradformer::data;
using Strings = std::vector<std::string>;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("gradformer-test-" + name)).string();
}

std::string random_bytes(Generator& gen, size_t max_length, std::string_view alphabet) {
  std::string bytes(gen.below(max_length + 1), '\0');
  for (char& c : bytes) {
    c = gen.below(2) == 0 ? alphabet[gen.below(alphabet.size())] : static_cast<char>(gen.below(256));
  }
  return bytes;
}

}  // namespace

TEST_CASE("Vocabulary: specials first, then by count and bytes; min_freq and max_size") {
  TokenCounts counts;
  count_tokens({"der", "Hund", "der", "Katze", "die", "die", "der", "<unk>"}, counts);
  const Vocabulary all = Vocabulary::build(counts);
  CHECK(all.size() == 8);
  CHECK(all.token(0) == "<pad>");
  CHECK(all.token(3) == "<unk>");
  CHECK(all.token(4) == "der");
  CHECK(all.token(5) == "die");
  CHECK(all.token(6) == "Hund");  // ties by bytes: "H" < "K"
  CHECK(all.token(7) == "Katze");
  CHECK(all.id("Katze") == 7);
  CHECK(all.id("Maus") == unk_id);
  CHECK(Vocabulary::build(counts, 2).size() == 6);
  CHECK(Vocabulary::build(counts, 1, 5).size() == 5);
  CHECK_THROWS_AS(all.token(8), IndexError);
  CHECK_THROWS_AS(all.token(-1), IndexError);

  CHECK(all.encode({"der", "Maus"}, true, true) == std::vector<int64_t>{bos_id, 4, unk_id, eos_id});
  CHECK(all.decode({bos_id, 4, 6, eos_id, 5}) == Strings{"der", "Hund"});
  CHECK(all.decode({pad_id, 7, pad_id}) == Strings{"Katze"});

  TokenCounts bad{{"two words", 3}};
  CHECK_THROWS_AS(Vocabulary::build(bad), ValueError);
}

TEST_CASE("Vocabulary: text and JSON round trips, files") {
  TokenCounts counts;
  count_tokens({"größe", "Hund", "."}, counts);
  const Vocabulary vocabulary = Vocabulary::build(counts);
  CHECK(Vocabulary::from_text(vocabulary.to_text()) == vocabulary);
  CHECK(Vocabulary::from_json(vocabulary.to_json()) == vocabulary);
  CHECK(Vocabulary::from_json(nlohmann::json::parse(vocabulary.to_json().dump())) == vocabulary);
  const std::string path = temp_path("vocab.txt");
  vocabulary.save(path);
  CHECK(Vocabulary::load(path) == vocabulary);
  std::remove(path.c_str());
  CHECK_THROWS_WITH_AS(Vocabulary::load("/nonexistent/vocab.txt"),
                       "vocabulary /nonexistent/vocab.txt: cannot open for reading", IOError);
}

TEST_CASE("Vocabulary: malformed files name the line") {
  const std::string specials = "<pad>\n<bos>\n<eos>\n<unk>\n";
  CHECK_THROWS_WITH_AS(Vocabulary::from_text("<pad>\n<bos>\n", "v.txt"),
                       "v.txt: expected the 4 special tokens first, found only 2 lines", FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text("<pad>\n<eos>\n<bos>\n<unk>\n", "v.txt"),
                       "v.txt: line 2: expected special token <bos>, found \"<eos>\"", FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text(specials + "a\n\nb\n", "v.txt"), "v.txt: line 6: empty token",
                       FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text(specials + "a\nb\na\n", "v.txt"),
                       "v.txt: line 7: duplicate token \"a\" (first at line 5)", FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text(specials + "a b\n", "v.txt"), "v.txt: line 5: token contains whitespace",
                       FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text(specials + "a\r\n", "v.txt"), "v.txt: line 5: token contains whitespace",
                       FormatError);
  CHECK_THROWS_WITH_AS(Vocabulary::from_text(specials + "\xff\n", "v.txt"),
                       "v.txt: line 5: token is not valid UTF-8", FormatError);
  CHECK_THROWS_AS(Vocabulary::from_json(nlohmann::json{{"tokens", {1, 2}}}), FormatError);
  CHECK_THROWS_AS(Vocabulary::from_json(nlohmann::json::array()), FormatError);
}

TEST_CASE("Vocabulary and Bpe loaders: arbitrary bytes give a value or a FormatError, never a crash") {
  Generator gen(11);
  const std::string specials = "<pad>\n<bos>\n<eos>\n<unk>\n";
  for (int round = 0; round < 3000; ++round) {
    const std::string noise = random_bytes(gen, 40, "ab \n</w>#");
    try {
      const Vocabulary vocabulary = Vocabulary::from_text(round % 2 == 0 ? specials + noise : noise);
      CHECK(Vocabulary::from_text(vocabulary.to_text()) == vocabulary);
      CHECK(Vocabulary::from_json(nlohmann::json::parse(vocabulary.to_json().dump())) == vocabulary);
    } catch (const FormatError&) {
    }
    try {
      const Bpe bpe = Bpe::from_text(round % 2 == 0 ? "#bpe v1\n" + noise : noise);
      CHECK(Bpe::from_text(bpe.to_text()).merges() == bpe.merges());
      const std::string text = "ab a</w> b";
      CHECK(bpe.detokenize(bpe.tokenize(text)) == WordTokenizer().detokenize(WordTokenizer().tokenize(text)));
    } catch (const FormatError&) {
    }
  }
}

TEST_CASE("WordTokenizer: punctuation split off and rejoined") {
  const WordTokenizer word;
  CHECK(word.tokenize("der Hund.") == Strings{"der", "Hund", "."});
  CHECK(word.tokenize("Er sagt, dass (wie immer) 3.5 oder 1,000 reicht!") ==
        Strings{"Er", "sagt", ",", "dass", "(", "wie", "immer", ")", "3.5", "oder", "1,000", "reicht", "!"});
  CHECK(word.tokenize("it's a well-known fact") == Strings{"it's", "a", "well-known", "fact"});
  CHECK(word.detokenize({"die", "Frau", "sagt", ",", "dass", "der", "Hund", "schläft", "."}) ==
        "die Frau sagt, dass der Hund schläft.");
  for (const std::string text : {"Er sagt, dass (wie immer) 3.5 oder 1,000 reicht!", "Wo? Hier: dort; [ja] {nein}.",
                                 "der große Hund sieht die kleine Katze."}) {
    CHECK(word.detokenize(word.tokenize(text)) == text);
  }
  CHECK(word.detokenize({}).empty());
}

TEST_CASE("CharTokenizer: code points with a boundary marker") {
  const CharTokenizer chars;
  CHECK(chars.tokenize("groß ja") == Strings{"g", "r", "o", "ß", "▁", "j", "a"});
  CHECK(chars.tokenize("  a   b ") == Strings{"a", "▁", "b"});
  for (const std::string text : {"der große Hund sieht die kleine Katze .", "ü", ""}) {
    CHECK(chars.detokenize(chars.tokenize(text)) == text);
  }
  // Invalid bytes are tokens of their own and come back unchanged.
  CHECK(chars.detokenize(chars.tokenize("a\xff\xc3")) == "a\xff\xc3");
}

TEST_CASE("Bpe: learns the most frequent pair first and applies merges by rank") {
  // Words: "low" x2 (l o w</w>), "lower" x1 (l o w e r</w>), "newest" x3 (n e w e s t</w>).
  // Pair counts: (w, e) 1 + 3 = 4; (l, o), (n, e), (e, w), (e, s), (s, t</w>) 3; (o, w</w>) 2; the rest 1.
  // Merge 1 is (w, e). Then (e, we), (l, o), (n, e), (s, t</w>), (we, s) all count 3 and the tie goes to the
  // smallest pair by bytes: (e, we).
  const Bpe bpe = Bpe::learn({"low low lower newest newest newest"}, 2);
  REQUIRE(bpe.merges().size() == 2);
  CHECK(bpe.merges()[0] == Bpe::Merge{"w", "e"});
  CHECK(bpe.merges()[1] == Bpe::Merge{"e", "we"});
  CHECK(bpe.encode_word("newer") == Strings{"n", "ewe", "r</w>"});
  CHECK(bpe.encode_word("lowest") == Strings{"l", "o", "we", "s", "t</w>"});
  CHECK(bpe.encode_word("x") == Strings{"x</w>"});
  CHECK(bpe.tokenize("low.") == Strings{"l", "o", "w</w>", ".</w>"});
  CHECK(bpe.detokenize(bpe.tokenize("low, lowest.")) == "low, lowest.");
  CHECK(bpe.detokenize({"lo", "we"}) == "lowe");  // a word cut off by the decoder is kept
  // Nothing occurs twice in a single word: learning stops early.
  CHECK(Bpe::learn({"abc"}, 10).merges().empty());
}

TEST_CASE("Bpe: round trip over the grammar task, save/load as text and JSON") {
  const Splits splits = make_grammar_task(1, 2000, 50, 50);
  std::vector<std::string> texts;
  for (const auto& pair : splits.train) {
    texts.push_back(pair.source);
    texts.push_back(pair.target);
  }
  const Bpe bpe = Bpe::learn(texts, 500);
  CHECK(bpe.merges().size() == 500);
  CHECK(Bpe::learn(texts, 500).merges() == bpe.merges());  // deterministic
  const WordTokenizer word;
  size_t tokens = 0, characters = 0;
  for (const auto& pair : splits.test) {
    const auto pieces = bpe.tokenize(pair.target);
    tokens += pieces.size();
    characters += pair.target.size();
    CHECK(bpe.detokenize(pieces) == word.detokenize(word.tokenize(pair.target)));
  }
  CHECK(tokens * 3 < characters);  // merges compress: fewer than a token per three bytes

  CHECK(Bpe::from_text(bpe.to_text()).merges() == bpe.merges());
  CHECK(Bpe::from_json(nlohmann::json::parse(bpe.to_json().dump())).merges() == bpe.merges());
  const auto rebuilt = tokenizer_from_json(bpe.to_json());
  CHECK(rebuilt->kind() == "bpe");
  CHECK(rebuilt->tokenize(splits.test[0].target) == bpe.tokenize(splits.test[0].target));
  CHECK(tokenizer_from_json(WordTokenizer().to_json())->kind() == "word");
  CHECK(tokenizer_from_json(CharTokenizer().to_json())->kind() == "char");
  CHECK_THROWS_AS(tokenizer_from_json(nlohmann::json{{"kind", "sentencepiece"}}), FormatError);

  const std::string path = temp_path("bpe.txt");
  bpe.save(path);
  CHECK(Bpe::load(path).merges() == bpe.merges());
  std::remove(path.c_str());
}

TEST_CASE("Bpe: malformed merge files name the line") {
  CHECK_THROWS_WITH_AS(Bpe::from_text("a b\n", "m.txt"), "m.txt: line 1: expected the header \"#bpe v1\"",
                       FormatError);
  CHECK_THROWS_WITH_AS(Bpe::from_text("#bpe v1\na b\nab\n", "m.txt"),
                       "m.txt: line 3: expected \"left right\" separated by one space", FormatError);
  CHECK_THROWS_WITH_AS(Bpe::from_text("#bpe v1\na b\na b\n", "m.txt"),
                       "m.txt: line 3: duplicate of the merge on line 2", FormatError);
  CHECK_THROWS_WITH_AS(Bpe::from_text("#bpe v1\na</w> b\n", "m.txt"), "m.txt: line 2: left symbol contains </w>",
                       FormatError);
  CHECK_THROWS_WITH_AS(Bpe::from_text("#bpe v1\na b</w>c\n", "m.txt"), "m.txt: line 2: </w> inside the right symbol",
                       FormatError);
  CHECK_THROWS_WITH_AS(Bpe::from_text("#bpe v1\na  b\n", "m.txt"),
                       "m.txt: line 2: expected \"left right\" separated by one space", FormatError);
  CHECK_THROWS_AS(Bpe::from_json(nlohmann::json{{"merges", {{"a"}}}}), FormatError);
  CHECK_THROWS_AS(Bpe(std::vector<Bpe::Merge>{{"a", ""}}), ValueError);
}

namespace {

std::vector<std::string> grammar_texts(const std::vector<SentencePair>& pairs) {
  std::vector<std::string> texts;
  for (const auto& pair : pairs) {
    texts.push_back(pair.source);
    texts.push_back(pair.target);
  }
  return texts;
}

std::set<std::string> directory_listing(const std::filesystem::path& directory) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) names.insert(entry.path().string());
  return names;
}

// Every test sentence comes back from its pieces unchanged (grammar sentences are already in the NFKC form
// SentencePiece normalises to, with single spaces), in fewer than two pieces per three bytes.
void check_round_trip(const SentencePiece& spm, const std::vector<SentencePair>& test) {
  size_t pieces = 0, bytes = 0;
  for (const std::string& text : grammar_texts(test)) {
    const Strings tokens = spm.tokenize(text);
    CHECK(spm.detokenize(tokens) == text);
    pieces += tokens.size();
    bytes += text.size();
  }
  CHECK(pieces * 3 < bytes * 2);
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view rest = path == nullptr ? "" : path;
  while (!rest.empty()) {
    const size_t colon = std::min(rest.find(':'), rest.size());
    const std::filesystem::path candidate = std::filesystem::path(rest.substr(0, colon)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    rest.remove_prefix(std::min(colon + 1, rest.size()));
  }
  return "";
}

}  // namespace

TEST_CASE("SentencePiece: unigram and BPE models trained in memory round-trip text and survive JSON") {
  const Splits splits = make_grammar_task(1, 1000, 50, 50);
  const std::set<std::string> directory_before = directory_listing(std::filesystem::current_path());
  for (const std::string type : {"unigram", "bpe"}) {
    CAPTURE(type);
    const SentencePiece spm = SentencePiece::train(grammar_texts(splits.train), {.vocab_size = 150, .model_type = type});
    CHECK(spm.kind() == "spm");
    check_round_trip(spm, splits.test);
    // Every rank of a data-parallel run trains its own: they must agree byte for byte.
    CHECK(SentencePiece::train(grammar_texts(splits.train), {.vocab_size = 150, .model_type = type}).model() ==
          spm.model());

    const auto rebuilt = tokenizer_from_json(nlohmann::json::parse(spm.to_json().dump()));
    CHECK(rebuilt->kind() == "spm");
    CHECK(dynamic_cast<const SentencePiece&>(*rebuilt).model() == spm.model());
    CHECK(rebuilt->tokenize(splits.test[0].target) == spm.tokenize(splits.test[0].target));
    TokenCounts counts;
    for (const std::string& text : grammar_texts(splits.train)) count_tokens(spm.tokenize(text), counts);
    CHECK(Vocabulary::build(counts).size() > 4);  // pieces are tokens a vocabulary can hold
  }
  CHECK(directory_listing(std::filesystem::current_path()) == directory_before);  // no model or vocab file left

  CHECK_THROWS_WITH_AS(SentencePiece::train(grammar_texts(splits.train), {.vocab_size = 150, .model_type = "word2"}),
                       doctest::Contains("model type word2"), ValueError);
  CHECK_THROWS_WITH_AS(SentencePiece::train({"", " "}, {}), "SentencePiece::train: no text to train on", ValueError);
}

TEST_CASE("SentencePiece: a model made by the spm_train program loads and round-trips") {
  const std::string spm_train = find_program("spm_train");
  if (spm_train.empty()) {
    MESSAGE("spm_train is not installed (Debian package sentencepiece): the model it would make is not tested");
    return;
  }
  const Splits splits = make_grammar_task(2, 1000, 50, 50);
  const std::string text = temp_path("spm-train.txt"), prefix = temp_path("spm-train");
  {
    std::ofstream out(text);
    for (const std::string& line : grammar_texts(splits.train)) out << line << '\n';
  }
  const std::string command = fmt::format("'{}' --input='{}' --model_prefix='{}' --vocab_size=150 --model_type=bpe "
                                          "--minloglevel=2 >/dev/null 2>&1", spm_train, text, prefix);
  REQUIRE(std::system(command.c_str()) == 0);
  const SentencePiece spm = SentencePiece::load(prefix + ".model");
  check_round_trip(spm, splits.test);
  for (const std::string& path : {text, prefix + ".model", prefix + ".vocab"}) std::remove(path.c_str());
}

TEST_CASE("SentencePiece: a corrupt or truncated .model file is a one-line FormatError naming it") {
  const Splits splits = make_grammar_task(1, 300, 10, 10);
  const std::string model = SentencePiece::train(grammar_texts(splits.train), {.vocab_size = 60}).model();
  const std::string path = temp_path("corrupt.model");
  for (const std::string& bytes : {std::string("not a model\n\x01\x02\xff", 15), model.substr(0, model.size() / 2),
                                  std::string()}) {
    {
      std::ofstream out(path, std::ios::binary);
      out << bytes;
    }
    std::string message;
    try {
      SentencePiece::load(path);
    } catch (const FormatError& error) {
      message = error.what();
    }
    CHECK(message.starts_with(path + ": not a SentencePiece model (libsentencepiece: "));
    CHECK(message.find('\n') == std::string::npos);
  }
  std::remove(path.c_str());
  CHECK_THROWS_AS(SentencePiece::load(path), IOError);
  CHECK_THROWS_WITH_AS(tokenizer_from_json({{"kind", "spm"}, {"model", "QUJD*"}}),
                       "spm json: base64 text of 5 characters, not a multiple of 4", FormatError);
  CHECK_THROWS_WITH_AS(tokenizer_from_json({{"kind", "spm"}, {"model", "QU=D"}}),
                       "spm json: character 4 of the base64 text is 'D', not base64", FormatError);
  CHECK_THROWS_AS(tokenizer_from_json({{"kind", "spm"}}), FormatError);
}
