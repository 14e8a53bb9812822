// The line between public and internal headers: the installed headers (GRADFORMER_PUBLIC_HEADERS, the list the
// meson build installs) include no header of the tree outside that list, and the kernels, the GEMM with its test
// hooks, and the op and layer tables are not among them. That a program compiles against the installed headers
// alone is the build's public-api-consumer target (tests/meson.build).
#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace {

std::set<std::string> public_headers() {
  std::set<std::string> headers;
  std::stringstream list(GRADFORMER_PUBLIC_HEADERS);
  for (std::string header; std::getline(list, header, ':');) headers.insert(header);
  return headers;
}

// The headers of the tree that `header` includes with quotes ("ops/ops.h"), as paths from the tree's top.
std::vector<std::string> project_includes(const std::string& header) {
  std::ifstream in(std::string(GRADFORMER_SOURCE_ROOT) + "/" + header);
  REQUIRE_MESSAGE(in.good(), header);
  std::vector<std::string> included;
  const std::regex quoted(R"re(^\s*#\s*include\s+"([^"]+)")re");
  std::smatch match;
  for (std::string line; std::getline(in, line);)
    if (std::regex_search(line, match, quoted)) included.push_back(match[1].str());
  return included;
}

}  // namespace

TEST_CASE("public headers: no installed header includes an internal one") {
  const std::set<std::string> installed = public_headers();
  REQUIRE(installed.count("include/gradformer/gradformer.h") == 1);
  REQUIRE(installed.count("ops/ops.h") == 1);
  for (const std::string& header : installed) {
    for (const std::string& included : project_includes(header)) {
      CAPTURE(header);
      CAPTURE(included);
      CHECK(installed.count(included) == 1);
    }
  }
}

TEST_CASE("public headers: kernels, GEMM test hooks and the op and layer tables stay internal") {
  const std::set<std::string> installed = public_headers();
  for (const char* internal : {"ops/kernels.h", "ops/gemm.h", "ops/gemm_backends.h", "ops/autocast_products.h",
                               "ops/fast_exp.h", "ops/dropout_mask.h", "ops/onednn.h", "ops/op_table.h",
                               "nn/layer_table.h", "autograd/dispatch.h", "autograd/strided.h"}) {
    CAPTURE(internal);
    CHECK(installed.count(internal) == 0);
  }
}
