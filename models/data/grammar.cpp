// The lexicon and templates of the `grammar` task (see grammar.h). Words were chosen to stay inside regular
// patterns: no weak masculine nouns (Junge, Löwe: "dem Jungen"), no adjectives that drop a letter when
// inflected (dunkel, teuer, hoch), no English nouns whose singular and plural coincide (sheep, fish), so that
// every English sentence has exactly one German translation here. Semantic fit is kept by kind masks: only
// people buy things, only things are eaten or opened, only containers take "in".
#include "models/data/grammar.h"

#include <array>
#include <string>
#include <vector>

namespace gradformer::data {
namespace {

enum Gender { masculine, feminine, neuter };
enum Case { nominative, accusative, dative };

// Kinds of noun, as bits so verbs and adjectives can say which they take.
constexpr unsigned person = 1, animal = 2, thing = 4, food = 8, portable = 16;
constexpr unsigned animate = person | animal, any_kind = person | animal | thing | food | portable;
constexpr unsigned small_thing = thing | portable;  // a noun one can carry, give or send; verbs ask for `portable`
// Which locative prepositions a noun can follow.
constexpr unsigned place_in = 1, place_on = 2, place_under = 4, place_near = 8;

struct Noun {
  const char* en_singular;
  const char* en_plural;
  const char* de_singular;
  const char* de_plural;
  Gender gender;
  unsigned kind;
  unsigned places;
};

// clang-format off
constexpr Noun nouns[] = {
    {"man", "men", "Mann", "Männer", masculine, person, place_near},
    {"woman", "women", "Frau", "Frauen", feminine, person, place_near},
    {"child", "children", "Kind", "Kinder", neuter, person, place_near},
    {"girl", "girls", "Mädchen", "Mädchen", neuter, person, place_near},
    {"teacher", "teachers", "Lehrer", "Lehrer", masculine, person, place_near},
    {"doctor", "doctors", "Arzt", "Ärzte", masculine, person, place_near},
    {"friend", "friends", "Freund", "Freunde", masculine, person, place_near},
    {"brother", "brothers", "Bruder", "Brüder", masculine, person, place_near},
    {"sister", "sisters", "Schwester", "Schwestern", feminine, person, place_near},
    {"father", "fathers", "Vater", "Väter", masculine, person, place_near},
    {"mother", "mothers", "Mutter", "Mütter", feminine, person, place_near},
    {"cook", "cooks", "Koch", "Köche", masculine, person, place_near},
    {"king", "kings", "König", "Könige", masculine, person, place_near},
    {"queen", "queens", "Königin", "Königinnen", feminine, person, place_near},
    {"uncle", "uncles", "Onkel", "Onkel", masculine, person, place_near},
    {"aunt", "aunts", "Tante", "Tanten", feminine, person, place_near},
    {"son", "sons", "Sohn", "Söhne", masculine, person, place_near},
    {"daughter", "daughters", "Tochter", "Töchter", feminine, person, place_near},
    {"driver", "drivers", "Fahrer", "Fahrer", masculine, person, place_near},
    {"baker", "bakers", "Bäcker", "Bäcker", masculine, person, place_near},
    {"pupil", "pupils", "Schüler", "Schüler", masculine, person, place_near},
    {"singer", "singers", "Sänger", "Sänger", masculine, person, place_near},
    {"painter", "painters", "Maler", "Maler", masculine, person, place_near},
    {"worker", "workers", "Arbeiter", "Arbeiter", masculine, person, place_near},
    {"waiter", "waiters", "Kellner", "Kellner", masculine, person, place_near},
    {"baby", "babies", "Baby", "Babys", neuter, person, place_near},
    {"grandmother", "grandmothers", "Großmutter", "Großmütter", feminine, person, place_near},
    {"grandfather", "grandfathers", "Großvater", "Großväter", masculine, person, place_near},
    {"dog", "dogs", "Hund", "Hunde", masculine, animal, place_near},
    {"cat", "cats", "Katze", "Katzen", feminine, animal, place_near},
    {"horse", "horses", "Pferd", "Pferde", neuter, animal, place_near},
    {"bird", "birds", "Vogel", "Vögel", masculine, animal, place_near},
    {"mouse", "mice", "Maus", "Mäuse", feminine, animal, place_near},
    {"cow", "cows", "Kuh", "Kühe", feminine, animal, place_near},
    {"pig", "pigs", "Schwein", "Schweine", neuter, animal, place_near},
    {"fox", "foxes", "Fuchs", "Füchse", masculine, animal, place_near},
    {"wolf", "wolves", "Wolf", "Wölfe", masculine, animal, place_near},
    {"duck", "ducks", "Ente", "Enten", feminine, animal, place_near},
    {"frog", "frogs", "Frosch", "Frösche", masculine, animal, place_near},
    {"snake", "snakes", "Schlange", "Schlangen", feminine, animal, place_near},
    {"tiger", "tigers", "Tiger", "Tiger", masculine, animal, place_near},
    {"donkey", "donkeys", "Esel", "Esel", masculine, animal, place_near},
    {"chicken", "chickens", "Huhn", "Hühner", neuter, animal, place_near},
    {"goat", "goats", "Ziege", "Ziegen", feminine, animal, place_near},
    {"beetle", "beetles", "Käfer", "Käfer", masculine, animal, 0},
    {"bee", "bees", "Biene", "Bienen", feminine, animal, 0},
    {"spider", "spiders", "Spinne", "Spinnen", feminine, animal, 0},
    {"owl", "owls", "Eule", "Eulen", feminine, animal, place_near},
    {"rabbit", "rabbits", "Kaninchen", "Kaninchen", neuter, animal, place_near},
    {"camel", "camels", "Kamel", "Kamele", neuter, animal, place_near},
    {"squirrel", "squirrels", "Eichhörnchen", "Eichhörnchen", neuter, animal, place_near},
    {"turtle", "turtles", "Schildkröte", "Schildkröten", feminine, animal, place_near},
    {"ball", "balls", "Ball", "Bälle", masculine, small_thing, 0},
    {"book", "books", "Buch", "Bücher", neuter, small_thing, place_near},
    {"table", "tables", "Tisch", "Tische", masculine, thing, place_on | place_under | place_near},
    {"chair", "chairs", "Stuhl", "Stühle", masculine, thing, place_on | place_under | place_near},
    {"house", "houses", "Haus", "Häuser", neuter, thing, place_in | place_near},
    {"car", "cars", "Auto", "Autos", neuter, thing, place_in | place_under | place_near},
    {"letter", "letters", "Brief", "Briefe", masculine, small_thing, 0},
    {"bag", "bags", "Tasche", "Taschen", feminine, small_thing, place_in | place_near},
    {"flower", "flowers", "Blume", "Blumen", feminine, small_thing, place_near},
    {"tree", "trees", "Baum", "Bäume", masculine, thing, place_under | place_near},
    {"stone", "stones", "Stein", "Steine", masculine, small_thing, place_on | place_under | place_near},
    {"key", "keys", "Schlüssel", "Schlüssel", masculine, small_thing, 0},
    {"door", "doors", "Tür", "Türen", feminine, thing, place_near},
    {"window", "windows", "Fenster", "Fenster", neuter, thing, place_near},
    {"lamp", "lamps", "Lampe", "Lampen", feminine, small_thing, place_under | place_near},
    {"clock", "clocks", "Uhr", "Uhren", feminine, small_thing, place_near},
    {"picture", "pictures", "Bild", "Bilder", neuter, small_thing, place_near},
    {"hat", "hats", "Hut", "Hüte", masculine, small_thing, place_in | place_under},
    {"shoe", "shoes", "Schuh", "Schuhe", masculine, small_thing, place_in},
    {"bottle", "bottles", "Flasche", "Flaschen", feminine, small_thing, place_in | place_near},
    {"cup", "cups", "Tasse", "Tassen", feminine, small_thing, place_in | place_near},
    {"plate", "plates", "Teller", "Teller", masculine, small_thing, place_on | place_near},
    {"knife", "knives", "Messer", "Messer", neuter, small_thing, 0},
    {"spoon", "spoons", "Löffel", "Löffel", masculine, small_thing, 0},
    {"boat", "boats", "Boot", "Boote", neuter, thing, place_in | place_on | place_near},
    {"train", "trains", "Zug", "Züge", masculine, thing, place_in | place_near},
    {"bicycle", "bicycles", "Fahrrad", "Fahrräder", neuter, thing, place_near},
    {"ship", "ships", "Schiff", "Schiffe", neuter, thing, place_on | place_near},
    {"box", "boxes", "Kiste", "Kisten", feminine, small_thing, place_in | place_on | place_near},
    {"card", "cards", "Karte", "Karten", feminine, small_thing, 0},
    {"newspaper", "newspapers", "Zeitung", "Zeitungen", feminine, small_thing, place_under},
    {"garden", "gardens", "Garten", "Gärten", masculine, thing, place_in | place_near},
    {"bridge", "bridges", "Brücke", "Brücken", feminine, thing, place_on | place_under | place_near},
    {"candle", "candles", "Kerze", "Kerzen", feminine, small_thing, place_near},
    {"gift", "gifts", "Geschenk", "Geschenke", neuter, small_thing, place_near},
    {"mirror", "mirrors", "Spiegel", "Spiegel", masculine, small_thing, place_near},
    {"bed", "beds", "Bett", "Betten", neuter, thing, place_in | place_on | place_under | place_near},
    {"ring", "rings", "Ring", "Ringe", masculine, small_thing, 0},
    {"glass", "glasses", "Glas", "Gläser", neuter, small_thing, place_in},
    {"pen", "pens", "Stift", "Stifte", masculine, small_thing, 0},
    {"pillow", "pillows", "Kissen", "Kissen", neuter, small_thing, place_on | place_under},
    {"suitcase", "suitcases", "Koffer", "Koffer", masculine, small_thing, place_in | place_on | place_near},
    {"basket", "baskets", "Korb", "Körbe", masculine, small_thing, place_in | place_near},
    {"pot", "pots", "Topf", "Töpfe", masculine, small_thing, place_in},
    {"blanket", "blankets", "Decke", "Decken", feminine, small_thing, place_on | place_under},
    {"umbrella", "umbrellas", "Regenschirm", "Regenschirme", masculine, small_thing, place_under},
    {"school", "schools", "Schule", "Schulen", feminine, thing, place_in | place_near},
    {"park", "parks", "Park", "Parks", masculine, thing, place_in},
    {"forest", "forests", "Wald", "Wälder", masculine, thing, place_in},
    {"city", "cities", "Stadt", "Städte", feminine, thing, place_in},
    {"room", "rooms", "Zimmer", "Zimmer", neuter, thing, place_in},
    {"kitchen", "kitchens", "Küche", "Küchen", feminine, thing, place_in},
    {"lake", "lakes", "See", "Seen", masculine, thing, place_in | place_near},
    {"roof", "roofs", "Dach", "Dächer", neuter, thing, place_on | place_under},
    {"street", "streets", "Straße", "Straßen", feminine, thing, place_on},
    {"wall", "walls", "Mauer", "Mauern", feminine, thing, place_on | place_near},
    {"fence", "fences", "Zaun", "Zäune", masculine, thing, place_on | place_near},
    {"sofa", "sofas", "Sofa", "Sofas", neuter, thing, place_on | place_under | place_near},
    {"tent", "tents", "Zelt", "Zelte", neuter, thing, place_in | place_near},
    {"castle", "castles", "Schloss", "Schlösser", neuter, thing, place_in | place_near},
    {"church", "churches", "Kirche", "Kirchen", feminine, thing, place_in | place_near},
    {"shop", "shops", "Laden", "Läden", masculine, thing, place_in | place_near},
    {"hill", "hills", "Hügel", "Hügel", masculine, thing, place_on | place_near},
    {"apple", "apples", "Apfel", "Äpfel", masculine, small_thing | food, 0},
    {"cake", "cakes", "Kuchen", "Kuchen", masculine, small_thing | food, 0},
    {"banana", "bananas", "Banane", "Bananen", feminine, small_thing | food, 0},
    {"pear", "pears", "Birne", "Birnen", feminine, small_thing | food, 0},
    {"egg", "eggs", "Ei", "Eier", neuter, small_thing | food, 0},
    {"sausage", "sausages", "Wurst", "Würste", feminine, small_thing | food, 0},
    {"potato", "potatoes", "Kartoffel", "Kartoffeln", feminine, small_thing | food, 0},
    {"tomato", "tomatoes", "Tomate", "Tomaten", feminine, small_thing | food, 0},
    {"carrot", "carrots", "Karotte", "Karotten", feminine, small_thing | food, 0},
    {"cherry", "cherries", "Kirsche", "Kirschen", feminine, small_thing | food, 0},
    {"lemon", "lemons", "Zitrone", "Zitronen", feminine, small_thing | food, 0},
    {"onion", "onions", "Zwiebel", "Zwiebeln", feminine, small_thing | food, 0},
    {"biscuit", "biscuits", "Keks", "Kekse", masculine, small_thing | food, 0},
};

struct Adjective {
  const char* en;
  const char* de_stem;
  unsigned kinds;
  int rank;  // English order: opinion 0, size 1, age 2, colour 3; two adjectives never share a rank
};

constexpr Adjective adjectives[] = {
    {"beautiful", "schön", any_kind, 0}, {"good", "gut", any_kind, 0}, {"strange", "seltsam", any_kind, 0},
    {"pretty", "hübsch", any_kind, 0}, {"clever", "klug", animate, 0}, {"friendly", "freundlich", animate, 0},
    {"tired", "müde", animate, 0}, {"hungry", "hungrig", animate, 0}, {"happy", "glücklich", animate, 0},
    {"sad", "traurig", animate, 0}, {"angry", "wütend", animate, 0}, {"lazy", "faul", animate, 0},
    {"quiet", "leise", animate, 0}, {"loud", "laut", any_kind, 0}, {"strong", "stark", animate, 0},
    {"fast", "schnell", animate, 0}, {"slow", "langsam", animate, 0}, {"rich", "reich", person, 0},
    {"poor", "arm", person, 0}, {"famous", "berühmt", person, 0}, {"wild", "wild", animal, 0},
    {"dirty", "schmutzig", any_kind, 0}, {"clean", "sauber", thing, 0}, {"cheap", "billig", thing, 0},
    {"empty", "leer", portable, 0}, {"full", "voll", portable, 0}, {"cold", "kalt", thing, 0}, {"warm", "warm", thing, 0},
    {"sweet", "süß", animal | food, 0}, {"fresh", "frisch", food, 0}, {"ripe", "reif", food, 0},
    {"big", "groß", any_kind, 1}, {"small", "klein", any_kind, 1}, {"heavy", "schwer", thing, 1},
    {"long", "lang", thing, 1}, {"short", "kurz", thing, 1}, {"round", "rund", portable, 1},
    {"old", "alt", any_kind, 2}, {"young", "jung", animate, 2}, {"new", "neu", thing, 2},
    {"red", "rot", animal | thing, 3}, {"black", "schwarz", animal | thing, 3}, {"white", "weiß", animal | thing, 3},
    {"brown", "braun", animal | thing, 3}, {"green", "grün", thing, 3}, {"blue", "blau", thing, 3},
    {"yellow", "gelb", thing, 3},
};

enum Frame {
  static_intransitive,  // may take a locative PP (in, on, under, behind, ...) or "with"
  motion,               // may take "to" (zu) or "out of" (aus)
  transitive,           // accusative object
  dative_object,        // helfen, danken, folgen, antworten
  ditransitive,         // "gives the book to the child" -> "gibt dem Kind das Buch"
  receive,              // "receives the letter from the man" -> "bekommt den Brief vom Mann"
  saying,               // "says that ..." -> "sagt , dass ..."
};

struct Verb {
  const char* en_singular;   // 3rd person singular present
  const char* en_plural;
  const char* en_participle;
  const char* de_singular;
  const char* de_plural;
  const char* de_participle;
  bool perfect_with_sein;
  Frame frame;
  unsigned subject_kinds;
  unsigned object_kinds;  // the accusative object, the dative object for dative_object
};

constexpr Verb verbs[] = {
    {"sleeps", "sleep", "slept", "schläft", "schlafen", "geschlafen", false, static_intransitive, animate, 0},
    {"plays", "play", "played", "spielt", "spielen", "gespielt", false, static_intransitive, animate, 0},
    {"waits", "wait", "waited", "wartet", "warten", "gewartet", false, static_intransitive, animate, 0},
    {"sits", "sit", "sat", "sitzt", "sitzen", "gesessen", false, static_intransitive, animate, 0},
    {"stands", "stand", "stood", "steht", "stehen", "gestanden", false, static_intransitive, animate, 0},
    {"works", "work", "worked", "arbeitet", "arbeiten", "gearbeitet", false, static_intransitive, person, 0},
    {"sings", "sing", "sung", "singt", "singen", "gesungen", false, static_intransitive, person, 0},
    {"dances", "dance", "danced", "tanzt", "tanzen", "getanzt", false, static_intransitive, person, 0},
    {"laughs", "laugh", "laughed", "lacht", "lachen", "gelacht", false, static_intransitive, person, 0},
    {"cries", "cry", "cried", "weint", "weinen", "geweint", false, static_intransitive, person, 0},
    {"goes", "go", "gone", "geht", "gehen", "gegangen", true, motion, animate, 0},
    {"runs", "run", "run", "läuft", "laufen", "gelaufen", true, motion, animate, 0},
    {"comes", "come", "come", "kommt", "kommen", "gekommen", true, motion, animate, 0},
    {"swims", "swim", "swum", "schwimmt", "schwimmen", "geschwommen", true, motion, animate, 0},
    {"drives", "drive", "driven", "fährt", "fahren", "gefahren", true, motion, person, 0},
    {"sees", "see", "seen", "sieht", "sehen", "gesehen", false, transitive, animate, any_kind},
    {"finds", "find", "found", "findet", "finden", "gefunden", false, transitive, animate, any_kind},
    {"looks for", "look for", "looked for", "sucht", "suchen", "gesucht", false, transitive, animate, any_kind},
    {"hears", "hear", "heard", "hört", "hören", "gehört", false, transitive, animate, animate},
    {"loves", "love", "loved", "liebt", "lieben", "geliebt", false, transitive, person, any_kind},
    {"likes", "like", "liked", "mag", "mögen", "gemocht", false, transitive, animate, any_kind},
    {"carries", "carry", "carried", "trägt", "tragen", "getragen", false, transitive, person, animal | portable},
    {"holds", "hold", "held", "hält", "halten", "gehalten", false, transitive, person, animal | portable},
    {"catches", "catch", "caught", "fängt", "fangen", "gefangen", false, transitive, animate, animal | portable},
    {"paints", "paint", "painted", "malt", "malen", "gemalt", false, transitive, person, any_kind},
    {"draws", "draw", "drawn", "zeichnet", "zeichnen", "gezeichnet", false, transitive, person, any_kind},
    {"takes", "take", "taken", "nimmt", "nehmen", "genommen", false, transitive, person, portable},
    {"buys", "buy", "bought", "kauft", "kaufen", "gekauft", false, transitive, person, thing},
    {"sells", "sell", "sold", "verkauft", "verkaufen", "verkauft", false, transitive, person, thing},
    {"needs", "need", "needed", "braucht", "brauchen", "gebraucht", false, transitive, animate, thing},
    {"forgets", "forget", "forgotten", "vergisst", "vergessen", "vergessen", false, transitive, person, any_kind},
    {"washes", "wash", "washed", "wäscht", "waschen", "gewaschen", false, transitive, person, animate | portable},
    {"eats", "eat", "eaten", "isst", "essen", "gegessen", false, transitive, person, food},
    {"visits", "visit", "visited", "besucht", "besuchen", "besucht", false, transitive, person, person},
    {"knows", "know", "known", "kennt", "kennen", "gekannt", false, transitive, person, animate},
    {"helps", "help", "helped", "hilft", "helfen", "geholfen", false, dative_object, person, animate},
    {"thanks", "thank", "thanked", "dankt", "danken", "gedankt", false, dative_object, person, person},
    {"follows", "follow", "followed", "folgt", "folgen", "gefolgt", true, dative_object, animate, animate},
    {"answers", "answer", "answered", "antwortet", "antworten", "geantwortet", false, dative_object, person, person},
    {"gives", "give", "given", "gibt", "geben", "gegeben", false, ditransitive, person, portable},
    {"shows", "show", "shown", "zeigt", "zeigen", "gezeigt", false, ditransitive, person, portable},
    {"brings", "bring", "brought", "bringt", "bringen", "gebracht", false, ditransitive, person, portable},
    {"sends", "send", "sent", "schickt", "schicken", "geschickt", false, ditransitive, person, portable},
    {"receives", "receive", "received", "bekommt", "bekommen", "bekommen", false, receive, person, portable},
    {"says", "say", "said", "sagt", "sagen", "gesagt", false, saying, person, 0},
    {"thinks", "think", "thought", "denkt", "denken", "gedacht", false, saying, person, 0},
    {"knows", "know", "known", "weiß", "wissen", "gewusst", false, saying, person, 0},
    {"hopes", "hope", "hoped", "hofft", "hoffen", "gehofft", false, saying, person, 0},
    {"believes", "believe", "believed", "glaubt", "glauben", "geglaubt", false, saying, person, 0},
};

struct Preposition {
  const char* en;
  const char* de;
  unsigned places;  // the noun must have one of these bits
};

constexpr Preposition locative_prepositions[] = {
    {"in", "in", place_in},          {"on", "auf", place_on},          {"under", "unter", place_under},
    {"behind", "hinter", place_near}, {"next to", "neben", place_near}, {"in front of", "vor", place_near},
};

struct Conjunction {
  const char* en;
  const char* de;
};
constexpr Conjunction adverbial_conjunctions[] = {{"because", "weil"}, {"although", "obwohl"}, {"while", "während"}};
// clang-format on

enum Determiner { the, a, this_, my };

struct NounPhrase {
  const Noun* noun = nullptr;
  bool plural = false;
  Determiner determiner = the;
  std::vector<const Adjective*> adjectives;
};

// Definite (der) and demonstrative (dieser) forms by case then gender, plural last.
constexpr std::array<std::array<const char*, 4>, 3> definite_forms{{
    {"der", "die", "das", "die"}, {"den", "die", "das", "die"}, {"dem", "der", "dem", "den"}}};
constexpr std::array<std::array<const char*, 4>, 3> dieser_endings{{
    {"er", "e", "es", "e"}, {"en", "e", "es", "e"}, {"em", "er", "em", "en"}}};
// ein/mein endings; "ein" has no plural, "meine" does.
constexpr std::array<std::array<const char*, 4>, 3> ein_endings{{
    {"", "e", "", "e"}, {"en", "e", "", "e"}, {"em", "er", "em", "en"}}};

template <class T, size_t N>
const T& pick(const T (&items)[N], Generator& gen) {
  return items[gen.below(N)];
}

template <class T, size_t N, class Fits>
const T& pick_where(const T (&items)[N], Generator& gen, Fits fits) {
  std::vector<const T*> candidates;
  for (const T& item : items) {
    if (fits(item)) candidates.push_back(&item);
  }
  return *candidates[gen.below(candidates.size())];
}

std::string join(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (part.empty()) continue;
    if (!out.empty()) out += ' ';
    out += part;
  }
  return out;
}

NounPhrase make_noun_phrase(Generator& gen, unsigned kinds, unsigned places = 0) {
  NounPhrase np;
  np.noun = &pick_where(nouns, gen, [&](const Noun& noun) {
    return (noun.kind & kinds) != 0 && (places == 0 || (noun.places & places) != 0);
  });
  np.plural = gen.uniform() < 0.3;
  const double d = gen.uniform();
  np.determiner = d < 0.6 ? the : d < 0.75 ? (np.plural ? the : a) : d < 0.88 ? this_ : my;
  const double r = gen.uniform();
  const size_t count = r < 0.45 ? 0 : r < 0.85 ? 1 : 2;
  for (size_t i = 0; i < count; ++i) {
    const Adjective& adjective = pick_where(adjectives, gen, [&](const Adjective& candidate) {
      if ((candidate.kinds & np.noun->kind) == 0) return false;
      for (const Adjective* chosen : np.adjectives) {
        if (chosen->rank == candidate.rank) return false;
      }
      return true;
    });
    np.adjectives.push_back(&adjective);
  }
  if (np.adjectives.size() == 2 && np.adjectives[0]->rank > np.adjectives[1]->rank) {
    std::swap(np.adjectives[0], np.adjectives[1]);
  }
  return np;
}

std::string english(const NounPhrase& np) {
  std::string words;
  for (const Adjective* adjective : np.adjectives) words = join({words, adjective->en});
  words = join({words, np.plural ? np.noun->en_plural : np.noun->en_singular});
  const char* determiner = "the";
  switch (np.determiner) {
    case the: determiner = "the"; break;
    case a: determiner = std::string("aeiou").find(words[0]) != std::string::npos ? "an" : "a"; break;
    case this_: determiner = np.plural ? "these" : "this"; break;
    case my: determiner = "my"; break;
  }
  return join({determiner, words});
}

// The German noun phrase; with `preposition` set, the preposition comes first and fuses with a definite
// singular article where German does (zu dem -> zum, zu der -> zur, von dem -> vom, in dem -> im).
std::string german(const NounPhrase& np, Case grammatical_case, const std::string& preposition = "") {
  const size_t slot = np.plural ? 3 : static_cast<size_t>(np.noun->gender);
  std::string determiner;
  bool weak = true;  // adjective declension after der/dieser (weak) or ein/mein (mixed)
  switch (np.determiner) {
    case the: determiner = definite_forms[grammatical_case][slot]; break;
    case this_: determiner = std::string("dies") + dieser_endings[grammatical_case][slot]; break;
    case a: determiner = std::string("ein") + ein_endings[grammatical_case][slot], weak = false; break;
    case my: determiner = std::string("mein") + ein_endings[grammatical_case][slot], weak = false; break;
  }
  std::string words;
  for (const Adjective* adjective : np.adjectives) {
    std::string ending = "en";
    if (grammatical_case != dative && !np.plural) {
      const bool feminine_or_neuter_acc = np.noun->gender != masculine || grammatical_case == nominative;
      ending = feminine_or_neuter_acc ? "e" : "en";
      if (!weak && np.noun->gender == masculine && grammatical_case == nominative) ending = "er";
      if (!weak && np.noun->gender == neuter) ending = "es";
    }
    std::string stem = adjective->de_stem;
    if (stem.back() == 'e') ending.erase(0, 1);  // müde + e -> müde, müde + en -> müden
    words = join({words, stem + ending});
  }
  std::string noun = np.plural ? np.noun->de_plural : np.noun->de_singular;
  if (np.plural && grammatical_case == dative && noun.back() != 'n' && noun.back() != 's') noun += 'n';
  words = join({words, noun});
  if (np.determiner == the && !np.plural && grammatical_case == dative) {
    const bool dem = np.noun->gender != feminine;
    if (preposition == "zu") return join({dem ? "zum" : "zur", words});
    if (dem && preposition == "von") return join({"vom", words});
    if (dem && preposition == "in") return join({"im", words});
  }
  return join({preposition, determiner, words});
}

// A clause in pieces, so one generator serves main clauses (verb second) and subordinate ones (verb last).
struct Clause {
  std::string english;
  std::string de_subject;
  std::string de_finite;  // the inflected verb: the main verb, or haben/sein in the perfect
  std::string de_middle;  // objects and prepositional phrases
  std::string de_final;   // the participle in the perfect
  std::string main() const { return join({de_subject, de_finite, de_middle, de_final}); }
  std::string subordinate() const { return join({de_subject, de_middle, de_final, de_finite}); }
};

// The clause whose subject has already been drawn and written out: `plural` is the subject's number, which the
// verb agrees with however far away it ends up.
Clause complete_clause(Generator& gen, const Verb& verb, const std::string& en_subject,
                       const std::string& de_subject, bool plural) {
  const bool perfect = gen.uniform() < 0.3;
  Clause clause;
  clause.de_subject = de_subject;
  std::string en_verb;
  if (perfect) {
    en_verb = join({plural ? "have" : "has", verb.en_participle});
    clause.de_finite = verb.perfect_with_sein ? (plural ? "sind" : "ist") : (plural ? "haben" : "hat");
    clause.de_final = verb.de_participle;
  } else {
    en_verb = plural ? verb.en_plural : verb.en_singular;
    clause.de_finite = plural ? verb.de_plural : verb.de_singular;
  }
  std::string en_rest;
  switch (verb.frame) {
    case static_intransitive: {
      const double r = gen.uniform();
      if (r < 0.6) {
        const Preposition& prep = pick(locative_prepositions, gen);
        const NounPhrase place = make_noun_phrase(gen, any_kind, prep.places);
        en_rest = join({prep.en, english(place)});
        clause.de_middle = german(place, dative, prep.de);
      } else if (r < 0.8) {
        const NounPhrase partner = make_noun_phrase(gen, any_kind);
        en_rest = join({"with", english(partner)});
        clause.de_middle = german(partner, dative, "mit");
      }
      break;
    }
    case motion: {
      const double r = gen.uniform();
      if (r < 0.6) {
        // People, animals and places one can walk to; the place bits leave out food and small objects.
        const NounPhrase goal = make_noun_phrase(gen, any_kind, place_near | place_in);
        en_rest = join({"to", english(goal)});
        clause.de_middle = german(goal, dative, "zu");
      } else if (r < 0.85) {
        const NounPhrase origin = make_noun_phrase(gen, thing, place_in);
        en_rest = join({"out of", english(origin)});
        clause.de_middle = german(origin, dative, "aus");
      }
      break;
    }
    case transitive: {
      const NounPhrase object = make_noun_phrase(gen, verb.object_kinds);
      en_rest = english(object);
      clause.de_middle = german(object, accusative);
      if (gen.uniform() < 0.3) {
        const Preposition& prep = pick(locative_prepositions, gen);
        const NounPhrase place = make_noun_phrase(gen, any_kind, prep.places);
        en_rest = join({en_rest, prep.en, english(place)});
        clause.de_middle = join({clause.de_middle, german(place, dative, prep.de)});
      }
      break;
    }
    case dative_object: {
      const NounPhrase object = make_noun_phrase(gen, verb.object_kinds);
      en_rest = english(object);
      clause.de_middle = german(object, dative);
      break;
    }
    case ditransitive: {
      const NounPhrase object = make_noun_phrase(gen, verb.object_kinds);
      const NounPhrase recipient = make_noun_phrase(gen, animate);
      en_rest = join({english(object), "to", english(recipient)});
      // Two full noun phrases: dative before accusative.
      clause.de_middle = join({german(recipient, dative), german(object, accusative)});
      break;
    }
    case receive: {
      const NounPhrase object = make_noun_phrase(gen, verb.object_kinds);
      const NounPhrase giver = make_noun_phrase(gen, person);
      en_rest = join({english(object), "from", english(giver)});
      clause.de_middle = join({german(object, accusative), german(giver, dative, "von")});
      break;
    }
    case saying: break;
  }
  clause.english = join({en_subject, en_verb, en_rest});
  return clause;
}

Clause make_clause(Generator& gen, const Verb& verb) {
  const NounPhrase subject = make_noun_phrase(gen, verb.subject_kinds);
  return complete_clause(gen, verb, english(subject), german(subject, nominative), subject.plural);
}

const Verb& pick_simple_verb(Generator& gen) {
  return pick_where(verbs, gen, [](const Verb& verb) { return verb.frame != saying; });
}

}  // namespace

SentencePair make_grammar_pair(Generator& gen) {
  for (;;) {
    SentencePair pair;
    const double r = gen.uniform();
    if (r < 0.6) {
      const Clause clause = make_clause(gen, pick_simple_verb(gen));
      pair = {clause.english + " .", clause.main() + " ."};
    } else if (r < 0.8) {
      const Clause main = make_clause(gen, pick_where(verbs, gen, [](const Verb& verb) {
        return verb.frame == saying;
      }));
      const Clause content = make_clause(gen, pick_simple_verb(gen));
      pair = {join({main.english, "that", content.english, "."}),
              join({main.main(), ",", "dass", content.subordinate(), "."})};
    } else {
      const Clause main = make_clause(gen, pick_simple_verb(gen));
      const Conjunction& conjunction = pick(adverbial_conjunctions, gen);
      const Clause reason = make_clause(gen, pick_simple_verb(gen));
      pair = {join({main.english, conjunction.en, reason.english, "."}),
              join({main.main(), ",", conjunction.de, reason.subordinate(), "."})};
    }
    const size_t source_tokens = split_whitespace(pair.source).size();
    const size_t target_tokens = split_whitespace(pair.target).size();
    if (source_tokens >= 4 && source_tokens <= 16 && target_tokens >= 4 && target_tokens <= 16) return pair;
  }
}

namespace {

bool is_simple_verb_for(const Verb& verb, unsigned subject_kind) {
  return verb.frame != saying && (verb.subject_kinds & subject_kind) != 0;
}

// A clause of grammar-long: its subject carries a subject relative clause with probability 1/2 ("the man who
// helps the woman" / "der Mann , der der Frau hilft ,"), which puts the relative clause between the subject and
// its verb; `relatives` counts them.
Clause make_long_clause(Generator& gen, const Verb& verb, size_t& relatives) {
  const NounPhrase subject = make_noun_phrase(gen, verb.subject_kinds);
  std::string en_subject = english(subject);
  std::string de_subject = german(subject, nominative);
  if (gen.uniform() < 0.5) {
    const Verb& relative_verb =
        pick_where(verbs, gen, [&](const Verb& candidate) { return is_simple_verb_for(candidate, subject.noun->kind); });
    const size_t slot = subject.plural ? 3 : static_cast<size_t>(subject.noun->gender);
    const Clause relative = complete_clause(gen, relative_verb, subject.noun->kind == person ? "who" : "which",
                                            definite_forms[nominative][slot], subject.plural);
    en_subject = join({en_subject, relative.english});
    de_subject = join({de_subject, ",", relative.subordinate(), ","});
    ++relatives;
  }
  return complete_clause(gen, verb, en_subject, de_subject, subject.plural);
}

}  // namespace

SentencePair make_grammar_long_pair(Generator& gen) {
  for (;;) {
    size_t relatives = 0;
    // A chain of 1..3 reported-speech clauses ("the man says that the woman thinks that ..."), each one a level
    // deeper, ending in a simple clause that is either the last "that" clause or joined by because/although/while.
    const size_t saying_clauses = 1 + gen.below(3);
    std::string english_text, german_text;
    for (size_t level = 0; level < saying_clauses; ++level) {
      const Clause clause = make_long_clause(
          gen, pick_where(verbs, gen, [](const Verb& verb) { return verb.frame == saying; }), relatives);
      english_text = join({english_text, clause.english, "that"});
      german_text = join({german_text, level == 0 ? clause.main() : clause.subordinate(), ",", "dass"});
    }
    const Clause last = make_long_clause(gen, pick_simple_verb(gen), relatives);
    if (gen.uniform() < 0.5) {
      english_text = join({english_text, last.english, "."});
      german_text = join({german_text, last.subordinate(), "."});
    } else {
      // The adverbial clause hangs off the innermost reported clause, so its verb still closes the sentence.
      const Conjunction& conjunction = pick(adverbial_conjunctions, gen);
      const Clause adverbial = make_long_clause(gen, pick_simple_verb(gen), relatives);
      english_text = join({english_text, last.english, conjunction.en, adverbial.english, "."});
      german_text = join({german_text, last.subordinate(), ",", conjunction.de, adverbial.subordinate(), "."});
    }
    const size_t source_tokens = split_whitespace(english_text).size();
    const size_t target_tokens = split_whitespace(german_text).size();
    if (relatives > 0 && source_tokens >= 12 && source_tokens <= kGrammarLongMaxTokens &&
        target_tokens <= kGrammarLongMaxTokens)
      return {english_text, german_text};
  }
}

Splits make_grammar_long_task(uint64_t seed, size_t train_size, size_t valid_size, size_t test_size) {
  Generator gen(seed);
  return draw_distinct_splits("grammar-long task", [&] { return make_grammar_long_pair(gen); }, train_size,
                              valid_size, test_size);
}

Splits make_grammar_task(uint64_t seed, size_t train_size, size_t valid_size, size_t test_size) {
  Generator gen(seed);
  return draw_distinct_splits("grammar task", [&] { return make_grammar_pair(gen); }, train_size, valid_size,
                              test_size);
}

}  // namespace gradformer::data
