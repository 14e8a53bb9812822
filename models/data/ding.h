// Sentence and phrase pairs extracted from the Ding German-English dictionary (Debian package trans-de-en,
// /usr/share/trans/de-en, GPL-2+: read at run time, never copied into this repository).
// A line is "German :: English"; " | " separates alternatives that correspond left to right; "; " separates
// synonyms inside an alternative; "#" starts a comment line. Extraction rules:
//  - lines whose sides have different numbers of alternatives are skipped (nothing to align);
//  - annotations are removed from both sides: {f} {pl} (gender, part of speech), [ugs.] [Am.] (register,
//    region, field), <eelsmoking> (search variants, "<>" separable-verb marks), (auf der Speisekarte) (glosses
//    and optional words), and /HI/ abbreviation tokens; the spaces they leave are tidied;
//  - of each alternative's synonyms only the first is kept on each side: all pairings would multiply
//    near-identical pairs and pair synonyms that are not translations of each other;
//  - pairs with "…" or "/" (elided or slash-joined variants) on either side are dropped;
//  - case and punctuation are kept as written (German capitalisation carries meaning); tokenise afterwards.
// Direction: source English, target German (as in the grammar task). Duplicated sources keep their first pair.
#pragma once

#include "models/data/corpus.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gradformer::data {

enum class DingPart {
  sentences,  // both sides 3..15 words, ending in . ! or ?, without jdn./etw./sb./sth. placeholders
  phrases,    // both sides 2..8 words and not both ending in . ! or ?
};

struct DingReport {
  size_t lines = 0;       // all lines of the file
  size_t comments = 0;    // lines starting with "#"
  size_t malformed = 0;   // lines without exactly one " :: "
  size_t misaligned = 0;  // lines whose sides have different numbers of alternatives
  size_t pairs = 0;       // aligned alternative pairs after stripping, before selection
  size_t selected = 0;    // pairs of the requested part, after removing duplicated sources
};

// Removes {..}, [..], <..>, (..) (nested or not; an unclosed one runs to the end) and /../ tokens, collapses
// whitespace, drops spaces left before , . ! ? ; : and trims.
std::string strip_ding_annotations(std::string_view text);

// The aligned (german, english) alternatives of one line after stripping, first synonym of each; empty for a
// comment, a malformed or a misaligned line, and for alternatives that strip to nothing on either side.
// Never throws: fuzzers may feed it any bytes.
struct DingPair {
  std::string german, english;
  bool operator==(const DingPair&) const = default;
};
std::vector<DingPair> parse_ding_line(std::string_view line);

// Selects one part, English source and German target, split by FNV-1a 64 of the source: hash % 100 == 0 goes to
// valid, == 1 to test, the rest to train, so a pair's split never depends on the others. Throws IOError (with an
// installation hint) when the file cannot be read.
Splits load_ding(const std::string& path = "/usr/share/trans/de-en", DingPart part = DingPart::sentences,
                 DingReport* report = nullptr);

// The same selection on text already in memory (what load_ding does after reading the file).
Splits parse_ding(std::string_view text, DingPart part, DingReport* report = nullptr);

}  // namespace gradformer::data
