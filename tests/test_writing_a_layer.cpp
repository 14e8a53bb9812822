// docs/writing-a-layer.md prints complete programs: each must be, byte for byte, the example file it names, and
// each example must build (tests/meson.build makes the test binary depend on them) and run to success
// (custom-layer is run by test_docs.cpp as the README's quickstart). The clean-room suite builds the same files
// outside the tree against the installed library.
#include "tests/program_helpers.h"

#include <doctest/doctest.h>

#include <map>
#include <string>

using namespace gradformer::testing;

namespace {

const std::string kSourceRoot = GRADFORMER_SOURCE_ROOT;

// Every "<!-- program: PATH -->" marker of the page with the ```cpp block right after it.
std::map<std::string, std::string> printed_programs(const std::string& page) {
  const std::string marker = "<!-- program: ", open = "```cpp\n", close = "```\n";
  std::map<std::string, std::string> programs;
  for (size_t at = page.find(marker); at != std::string::npos; at = page.find(marker, at + 1)) {
    const size_t path_end = page.find(" -->\n", at);
    REQUIRE(path_end != std::string::npos);
    const std::string path = page.substr(at + marker.size(), path_end - at - marker.size());
    const size_t body = path_end + 5;
    REQUIRE_MESSAGE(page.compare(body, open.size(), open) == 0, path << ": the marker is not followed by ```cpp");
    const size_t end = page.find("\n" + close, body + open.size());
    REQUIRE(end != std::string::npos);
    programs[path] = page.substr(body + open.size(), end + 1 - body - open.size());
  }
  return programs;
}

}  // namespace

TEST_CASE("writing a layer: the programs docs/writing-a-layer.md prints are the example files") {
  const std::map<std::string, std::string> programs =
      printed_programs(read_file(kSourceRoot + "/docs/writing-a-layer.md"));
  CHECK(programs.size() == 3);
  for (const char* path : {"examples/custom_layer.cpp", "examples/custom_transformer.cpp", "examples/module_api.cpp"}) {
    CAPTURE(path);
    REQUIRE(programs.contains(path));
    const std::string file = read_file(kSourceRoot + "/" + path);
    REQUIRE(!file.empty());
    CHECK(programs.at(path) == file);
    // The way a user's program includes the library: the installed umbrella header and nothing internal.
    CHECK(file.find("#include <gradformer/gradformer.h>") != std::string::npos);
    CHECK(file.find("#include \"") == std::string::npos);
  }
}

TEST_CASE("writing a layer: custom-transformer checks its blocks, trains transformer-tiny with them and reloads") {
  if (!kProgramsBuilt) return;
  const Outcome o = run("custom-transformer", {});
  INFO(o.out << o.err);
  CHECK(o.exit_code == 0);
  CHECK(count_lines_containing(o.out, " ok") == 4);
  CHECK(o.out.find("FAILED") == std::string::npos);
}

TEST_CASE("writing a layer: module-api's hooks, frozen layer, parameter groups and two-optimizer checkpoint") {
  if (!kProgramsBuilt) return;
  const Outcome o = run("module-api", {});
  INFO(o.out << o.err);
  CHECK(o.exit_code == 0);
  CHECK(count_lines_containing(o.out, "hook saw encoder.layers.") == 2);
  CHECK(o.out.find("FAILED") == std::string::npos);
}
