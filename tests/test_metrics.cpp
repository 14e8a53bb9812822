// BLEU, chrF and exact match against hand-counted n-grams and against values printed by sacreBLEU itself
// (its README example, and the chrF values in the Hugging Face metric card, both computed with sacreBLEU).
#include "models/metrics.h"

#include "autograd/error.h"

#include <doctest/doctest.h>

#include <cmath>

using namespace gradformer::metrics;
using Strings = std::vector<std::string>;

TEST_CASE("tokenize_13a: punctuation, entities and digits as mteval-v13a splits them") {
  CHECK(tokenize_13a("Hello, world!") == Strings{"Hello", ",", "world", "!"});
  CHECK(tokenize_13a("It wasn't 3.5 or 1,000.") == Strings{"It", "wasn't", "3.5", "or", "1,000", "."});
  CHECK(tokenize_13a("pages 10-12 (see \"A&amp;B\")") ==
        Strings{"pages", "10", "-", "12", "(", "see", "\"", "A", "&", "B", "\"", ")"});
  CHECK(tokenize_13a("a.b e-mail x<skipped>y") == Strings{"a", ".", "b", "e-mail", "xy"});
  CHECK(tokenize_13a("  spaced\tout\u00A0nbsp  ") == Strings{"spaced", "out", "nbsp"});
  CHECK(tokenize_13a("").empty());
}

TEST_CASE("corpus_bleu: identical is 100, disjoint is 0") {
  const Strings refs{"the big dog sees the small cat .", "der Hund sieht die Katze ."};
  const BleuScore same = corpus_bleu(refs, refs);
  CHECK(same.score == doctest::Approx(100.0));
  CHECK(same.bp == 1.0);
  CHECK(same.format() == "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 14 ref_len = 14)");

  const BleuScore none = corpus_bleu(Strings{"x y z w v"}, Strings{"a b c d e"});
  CHECK(none.score == 0.0);
  CHECK(none.format() == "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 5 ref_len = 5)");
}

TEST_CASE("corpus_bleu: a hand-counted example with exp smoothing") {
  // hyp "the cat sat on the mat" vs ref "the cat is on the mat" (6 tokens each, so BP = 1):
  //   1-grams: the x2, cat, on, mat match -> 5/6
  //   2-grams: "the cat", "on the", "the mat" -> 3/5
  //   3-grams: "on the mat" -> 1/4
  //   4-grams: none of 3 -> exp smoothing gives 100 / (2 * 3)
  const BleuScore s = corpus_bleu(Strings{"the cat sat on the mat"}, Strings{"the cat is on the mat"});
  CHECK(s.counts == std::array<size_t, 4>{5, 3, 1, 0});
  CHECK(s.totals == std::array<size_t, 4>{6, 5, 4, 3});
  const double expected = std::pow(100.0 * 5 / 6 * 100.0 * 3 / 5 * 100.0 / 4 * 100.0 / 6, 0.25);
  CHECK(s.score == doctest::Approx(expected));
  CHECK(s.precisions[3] == doctest::Approx(100.0 / 6));

  const BleuScore unsmoothed =
      corpus_bleu(Strings{"the cat sat on the mat"}, Strings{"the cat is on the mat"}, BleuSmoothing::none);
  CHECK(unsmoothed.score == doctest::Approx(0.0).epsilon(1e-12));
}

TEST_CASE("corpus_bleu: brevity penalty and a hypothesis too short for 4-grams") {
  // 3 hypothesis tokens against 6 reference tokens: BP = exp(1 - 6/3); no 4-gram exists, so the score is 0.
  const BleuScore s = corpus_bleu(Strings{"the cat sat"}, Strings{"the cat sat on the mat"});
  CHECK(s.bp == doctest::Approx(std::exp(-1.0)));
  CHECK(s.totals[3] == 0);
  CHECK(s.score == doctest::Approx(0.0).epsilon(1e-12));
  CHECK(corpus_bleu(Strings{""}, Strings{"a b"}).bp == 0.0);
}

TEST_CASE("corpus_bleu: sacreBLEU's README example with two reference streams") {
  const Strings sys{"The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."};
  const std::vector<Strings> refs{{"The dog bit the man.", "It was not unexpected.", "The man bit him first."},
                                  {"The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."}};
  CHECK(corpus_bleu(sys, refs).format() ==
        "BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944 hyp_len = 17 ref_len = 18)");
}

TEST_CASE("corpus_bleu: mismatched counts are a ValueError") {
  CHECK_THROWS_AS(corpus_bleu(Strings{"a"}, Strings{"a", "b"}), gradformer::ValueError);
  CHECK_THROWS_AS(corpus_chrf(Strings{"a"}, Strings{}), gradformer::ValueError);
  CHECK_THROWS_AS(exact_match(Strings{}, Strings{"a"}), gradformer::ValueError);
}

TEST_CASE("corpus_chrf: identical, disjoint and sacreBLEU's published values") {
  CHECK(corpus_chrf(Strings{"der Hund"}, Strings{"der Hund"}).score == doctest::Approx(100.0));
  CHECK(corpus_chrf(Strings{"xyz"}, Strings{"abc"}).score == 0.0);
  CHECK(corpus_chrf(Strings{""}, Strings{""}).score == 0.0);
  // Whitespace is removed before counting, so spacing does not matter.
  CHECK(corpus_chrf(Strings{"derHund ."}, Strings{"der Hund."}).score == doctest::Approx(100.0));

  const ChrfScore one = corpus_chrf(Strings{"The relationship between Obama and Netanyahu is not exactly friendly."},
                                    Strings{"The ties between Obama and Netanyahu are not particularly friendly."});
  CHECK(one.score == doctest::Approx(61.576379378113785).epsilon(1e-12));
  CHECK(one.format() == "chrF2 = 61.58");
  const ChrfScore two = corpus_chrf(
      Strings{"The relationship between cats and dogs is not exactly friendly.",
              "a good bookshop is just a genteel black hole that knows how to read."},
      Strings{"The relationship between dogs and cats is not exactly friendly.",
              "A good bookshop is just a genteel Black Hole that knows how to read."});
  CHECK(two.score == doctest::Approx(84.64214891738334).epsilon(1e-12));
}

TEST_CASE("corpus_chrf: characters are code points, not bytes") {
  // "ä" vs "a": one 1-gram on each side, no match; a byte-level count would see two bytes in the hypothesis.
  CHECK(corpus_chrf(Strings{"ä"}, Strings{"a"}).score == 0.0);
  CHECK(corpus_chrf(Strings{"größe"}, Strings{"größe"}).score == doctest::Approx(100.0));
}

TEST_CASE("exact_match") {
  CHECK(exact_match(Strings{"a b", "c", "d"}, Strings{"a b", "c ", "d"}) == doctest::Approx(2.0 / 3.0));
  CHECK(exact_match(Strings{}, Strings{}) == 0.0);
}
