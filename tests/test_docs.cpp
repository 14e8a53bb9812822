// The README and the manual (docs/) against the tree they describe: every relative link resolves to a file, and
// an #anchor to a heading of it; every flag a program's --help prints is documented in its section of
// docs/programs.md; and the README's quickstarts are run exactly as printed, their output compared with the output
// shown. Failures name the file, the line and what is missing. The program parts are skipped in a build without
// the programs (run.sh's sanitizer build).
#include "tests/program_helpers.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace gradformer::testing;

namespace {

namespace fs = std::filesystem;

const fs::path kSource = GRADFORMER_SOURCE_ROOT;

struct Line {
  int number;        // 1-based
  std::string text;
  bool in_code;      // inside a fenced code block, or one of its fences
};

// The file's lines, each marked whether it belongs to a fenced code block (``` ... ```).
std::vector<Line> lines_with_fences(const fs::path& path) {
  std::vector<Line> lines;
  bool in_code = false;
  int number = 0;
  for (const std::string& text : lines_of(read_file(path.string()))) {
    const bool fence = text.starts_with("```");
    lines.push_back({++number, text, in_code || fence});
    if (fence) in_code = !in_code;
  }
  return lines;
}

// GitHub's anchor of a heading: lower case, punctuation dropped (letters, digits, '-', '_' and non-ASCII bytes
// stay), spaces to '-'; a repeated heading gets "-1", "-2", ...
std::set<std::string> anchors_of(const fs::path& path) {
  std::set<std::string> anchors;
  std::map<std::string, int> seen;
  for (const Line& line : lines_with_fences(path)) {
    if (line.in_code || !line.text.starts_with("#")) continue;
    const size_t start = line.text.find_first_not_of('#');
    if (start == std::string::npos || line.text[start] != ' ') continue;
    std::string slug;
    for (char c : line.text.substr(start + 1)) {
      const auto byte = static_cast<unsigned char>(c);
      if (std::isalnum(byte) || c == '-' || c == '_' || byte >= 0x80) slug += static_cast<char>(std::tolower(byte));
      else if (c == ' ') slug += '-';
    }
    const int repeats = seen[slug]++;
    anchors.insert(repeats == 0 ? slug : slug + "-" + std::to_string(repeats));
  }
  return anchors;
}

// README.md and every page under docs/, as paths relative to the source root.
std::vector<fs::path> markdown_files() {
  std::vector<fs::path> files{"README.md"};
  for (const auto& entry : fs::recursive_directory_iterator(kSource / "docs"))
    if (entry.is_regular_file() && entry.path().extension() == ".md")
      files.push_back(fs::relative(entry.path(), kSource));
  return files;
}

// A line with its `inline code` spans blanked, so that a link-like text inside code is not taken for a link.
std::string without_code_spans(const std::string& text) {
  std::string out = text;
  bool in_span = false;
  for (char& c : out) {
    if (c == '`') in_span = !in_span;
    else if (in_span) c = ' ';
  }
  return out;
}

// The section of docs/programs.md headed "## <program>": its first line number and its text.
struct Section {
  int line = 0;
  std::string text;
};

Section program_section(const std::string& program) {
  Section section;
  bool inside = false;
  for (const Line& line : lines_with_fences(kSource / "docs" / "programs.md")) {
    if (!line.in_code && line.text.starts_with("## ")) {
      inside = line.text == "## " + program;
      if (inside) section.line = line.number;
      continue;
    }
    if (inside) section.text += line.text + "\n";
  }
  return section;
}

// The long flags a CLI11 --help lists at the start of its option lines ("  -h,--help", "  --task TEXT=grammar").
std::vector<std::string> help_flags(const std::string& help) {
  const std::regex option_line(R"(^  (?:-[A-Za-z],)?(--[a-z0-9][a-z0-9-]*))");
  std::vector<std::string> flags;
  for (const std::string& line : lines_of(help)) {
    std::smatch match;
    if (std::regex_search(line, match, option_line)) flags.push_back(match[1]);
  }
  return flags;
}

bool mentions_flag(const std::string& text, const std::string& flag) {
  for (size_t at = text.find(flag); at != std::string::npos; at = text.find(flag, at + 1)) {
    const size_t end = at + flag.size();
    const bool whole = end == text.size() || !(std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-');
    if (whole) return true;
  }
  return false;
}

// A fenced block of the README: its language ("sh", "cpp", "text"), the line of its opening fence, its text.
struct Block {
  std::string language;
  int line;
  std::string text;
};

// The README's "## Quickstarts" section as subsections ("### ...": their heading, prose and fenced blocks).
struct Quickstart {
  std::string heading;
  int line;
  std::string prose;
  std::vector<Block> blocks;
};

std::vector<Quickstart> readme_quickstarts() {
  std::vector<Quickstart> quickstarts;
  bool in_section = false;
  Block* block = nullptr;
  for (const Line& line : lines_with_fences(kSource / "README.md")) {
    if (!line.in_code && line.text.starts_with("## ")) {
      in_section = line.text == "## Quickstarts";
      continue;
    }
    if (!in_section) continue;
    if (!line.in_code && line.text.starts_with("### ")) {
      quickstarts.push_back({line.text.substr(4), line.number, "", {}});
    } else if (quickstarts.empty()) {
      continue;
    } else if (line.text.starts_with("```")) {
      if (block == nullptr) {
        quickstarts.back().blocks.push_back({line.text.substr(3), line.number, ""});
        block = &quickstarts.back().blocks.back();
      } else {
        block = nullptr;
      }
    } else if (block != nullptr) {
      block->text += line.text + "\n";
    } else {
      quickstarts.back().prose += line.text + "\n";
    }
  }
  return quickstarts;
}

// The commands of a shell block: continuation lines joined, blank lines and comments dropped.
std::vector<std::string> commands_of(const std::string& block) {
  std::vector<std::string> commands;
  std::string pending;
  for (const std::string& line : lines_of(block)) {
    if (pending.empty() && (line.empty() || line.starts_with("#"))) continue;
    if (line.ends_with("\\")) {
      pending += line.substr(0, line.size() - 1);
      continue;
    }
    commands.push_back(pending + line);
    pending.clear();
  }
  return commands;
}

// Runs `command` with /bin/sh in `directory`; returns its exit code, stdout and stderr.
Outcome run_shell(const std::string& command, const std::string& directory) {
  static int counter = 0;
  const std::string stem = directory + "/.command-" + std::to_string(counter++);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, (stem + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, (stem + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::string script = "cd '" + directory + "' || exit 125\n" + command;
  std::vector<std::string> words{"/bin/sh", "-c", script};
  std::vector<char*> argv;
  for (std::string& word : words) argv.push_back(word.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE_MESSAGE(spawned == 0, "cannot run /bin/sh");
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(stem + ".out"), read_file(stem + ".err")};
}

// Numbers in scientific notation (gradcheck's errors) vary in their digits from CPU to CPU: compared as "#e#".
std::string masked(const std::string& line) {
  static const std::regex scientific(R"([0-9]+\.[0-9]+e[+-][0-9]+)");
  return std::regex_replace(line, scientific, "#e#");
}

// Whether `output` shows what `expected` shows: its lines in order and consecutive, from the first line of the
// output to the last, except where a "..." line stands for any lines (at the start, between, or at the end).
bool output_matches(const std::string& output, const std::string& expected) {
  std::vector<std::string> have;
  for (const std::string& line : lines_of(output)) have.push_back(masked(line));
  std::vector<std::vector<std::string>> chunks{{}};
  for (const std::string& line : lines_of(expected)) {
    if (line == "...") chunks.emplace_back();
    else chunks.back().push_back(masked(line));
  }
  const auto starts_with_chunk = [&](size_t at, const std::vector<std::string>& chunk) {
    return at + chunk.size() <= have.size() && std::equal(chunk.begin(), chunk.end(), have.begin() + at);
  };
  size_t at = 0;
  for (size_t c = 0; c < chunks.size(); ++c) {
    const std::vector<std::string>& chunk = chunks[c];
    if (chunk.empty()) continue;
    if (c == chunks.size() - 1) {  // the last chunk ends the output
      return have.size() >= at + chunk.size() && starts_with_chunk(have.size() - chunk.size(), chunk) &&
             (c > 0 || have.size() == chunk.size());
    }
    if (c == 0) {  // the first chunk starts it
      if (!starts_with_chunk(0, chunk)) return false;
      at = chunk.size();
      continue;
    }
    const auto found = std::search(have.begin() + static_cast<std::ptrdiff_t>(at), have.end(), chunk.begin(), chunk.end());
    if (found == have.end()) return false;
    at = static_cast<size_t>(found - have.begin()) + chunk.size();
  }
  return true;
}

}  // namespace

TEST_CASE("docs: every relative link of the README and the manual resolves, anchors included") {
  const std::regex link(R"(!?\[[^\]]*\]\(([^)\s]+)\))");
  int links = 0;
  for (const fs::path& file : markdown_files()) {
    for (const Line& line : lines_with_fences(kSource / file)) {
      if (line.in_code) continue;
      const std::string text = without_code_spans(line.text);
      for (auto it = std::sregex_iterator(text.begin(), text.end(), link); it != std::sregex_iterator(); ++it) {
        const std::string target = (*it)[1];
        if (target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:"))
          continue;
        ++links;
        const size_t hash = target.find('#');
        const std::string path_part = target.substr(0, hash);
        const fs::path resolved = path_part.empty() ? kSource / file : kSource / file.parent_path() / path_part;
        const std::string where = file.string() + ":" + std::to_string(line.number);
        CHECK_MESSAGE(fs::exists(resolved), where << ": link to " << target << ": " << path_part << " does not exist");
        if (hash == std::string::npos || !fs::is_regular_file(resolved) || resolved.extension() != ".md") continue;
        const std::string anchor = target.substr(hash + 1);
        CHECK_MESSAGE(anchors_of(resolved).count(anchor) == 1,
                      where << ": link to " << target << ": " << fs::relative(resolved, kSource).string()
                            << " has no heading whose anchor is #" << anchor);
      }
    }
  }
  CHECK(links > 20);
}

TEST_CASE("docs: every flag a program's --help prints is in its section of docs/programs.md") {
  if (!kProgramsBuilt) return;
  for (const std::string program :
       {"gradformer-train", "gradformer-translate", "gradformer-average", "gradformer-gradcheck", "gradformer-bench"}) {
    CAPTURE(program);
    const Outcome help = run(program, {"--help"});
    REQUIRE(help.exit_code == 0);
    const std::vector<std::string> flags = help_flags(help.out);
    CHECK(flags.size() >= 3);
    const Section section = program_section(program);
    REQUIRE_MESSAGE(section.line > 0, "docs/programs.md has no section \"## " << program << "\"");
    for (const std::string& flag : flags)
      CHECK_MESSAGE(mentions_flag(section.text, flag), "docs/programs.md:" << section.line << ": the section \"## "
                                                           << program << "\" does not mention " << flag << ", which `"
                                                           << program << " --help` prints");
  }
}

TEST_CASE("docs: the README's quickstarts run as printed and print what they show" *
          doctest::skip(kSanitizerBuild)) {
  if (!kProgramsBuilt) return;
  const std::vector<Quickstart> quickstarts = readme_quickstarts();
  REQUIRE(quickstarts.size() == 3);
  for (const Quickstart& quickstart : quickstarts) {
    CAPTURE(quickstart.heading);
    // Each quickstart runs in a fresh directory whose build/examples are the built programs.
    const TempDir dir("gradformer-test-quickstart");
    fs::create_directories(dir.str("build"));
    fs::create_directory_symlink(kPrograms, dir.str("build/examples"));
    std::string last_output;
    int last_command_line = 0;
    bool ran = false;
    for (const Block& block : quickstart.blocks) {
      const std::string where = "README.md:" + std::to_string(block.line);
      if (block.language == "cpp") {
        std::smatch match;
        const std::regex source(R"(`(examples/[A-Za-z0-9_]+\.cpp)`)");
        REQUIRE_MESSAGE(std::regex_search(quickstart.prose, match, source),
                        where << ": a program block whose prose names no examples/*.cpp file");
        CHECK_MESSAGE(block.text == read_file((kSource / match[1].str()).string()),
                      where << ": the program differs from " << match[1].str() << " (copy the file into the README)");
      } else if (block.language == "sh") {
        for (const std::string& command : commands_of(block.text)) {
          const Outcome outcome = run_shell(command, dir.str());
          CHECK_MESSAGE(outcome.exit_code == 0, where << ": `" << command << "` exited with " << outcome.exit_code
                                                      << "; stderr:\n" << outcome.err);
          last_output = outcome.out;
        }
        last_command_line = block.line;
        ran = true;
      } else if (block.language == "text") {
        REQUIRE_MESSAGE(ran, where << ": output shown before any command");
        CHECK_MESSAGE(output_matches(last_output, block.text),
                      where << ": the output of the commands at README.md:" << last_command_line
                            << " differs from the output shown. It printed:\n" << last_output);
      }
    }
    CHECK_MESSAGE(ran, "README.md:" << quickstart.line << ": quickstart \"" << quickstart.heading << "\" runs nothing");
  }
}
