// The `grammar` toy task: a seeded generator of English sentences and their German translations that exercises
// gender, case (nominative, accusative, dative), adjective endings after definite and indefinite determiners,
// subject-verb agreement, the perfect tense with its participle at the end, dative prepositions with their
// contractions (zum, zur, vom, im), dative and ditransitive verbs, and verb-final subordinate clauses.
// English is lowercase; German nouns are capitalised and sentences start lowercase; punctuation is its own
// token. The `grammar-long` variant chains reported speech ("says that ... thinks that ...") with subject
// relative clauses, so a German verb often closes its clause many tokens after the subject it agrees with.
// Not a general translator: every sentence comes from a few fixed templates over a fixed lexicon.
#pragma once

#include "models/data/corpus.h"

#include <cstddef>
#include <cstdint>

namespace gradformer::data {

// One sentence pair from `gen`, 4..16 tokens on each side.
SentencePair make_grammar_pair(Generator& gen);

// Splits of distinct English sources drawn from Generator(seed); the same seed gives the same splits.
Splits make_grammar_task(uint64_t seed = 1, size_t train_size = 20000, size_t valid_size = 500,
                         size_t test_size = 500);

// grammar-long: 12..kGrammarLongMaxTokens tokens a side, at least one relative clause each.
inline constexpr size_t kGrammarLongMaxTokens = 60;
SentencePair make_grammar_long_pair(Generator& gen);

// Its training split is drawn first, so the first N pairs of it are the same whatever train_size is: runs on
// --max-train-sentences N train on nested subsets, and valid/test stay the same for every N at one train_size.
Splits make_grammar_long_task(uint64_t seed = 1, size_t train_size = 128000, size_t valid_size = 500,
                              size_t test_size = 500);

}  // namespace gradformer::data
