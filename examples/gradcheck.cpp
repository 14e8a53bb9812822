// gradformer-gradcheck: gradient-checks every row of the op table and of the layer table in f64 (each case,
// contiguous and strided inputs; layers with their parameters) and prints one line per check: name, input
// shapes, worst absolute and relative error, pass/fail. --list shows each op with its variants
// (`sum: all, axes, keepdim`), then the layers; --only takes an op or a layer (all its rows), or one row.
// Exits 1 if any row fails, 2 on bad flags.
#include "autograd/gradcheck.h"
#include "examples/cli.h"
#include "nn/layer_table.h"
#include "ops/op_table.h"
#include "ops/threads.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace gradformer;

namespace {

std::string shapes_of(const std::vector<Tensor>& inputs) {
  std::vector<std::string> parts;
  for (const Tensor& t : inputs) parts.push_back(shape_str(t.shape()));
  return fmt::format("{}", fmt::join(parts, " "));
}

// "sum: all, axes, keepdim"; an op checked only in its plain call is its name alone, and that plain call is
// "default" beside other variants ("add: default, scalar").
std::string op_listing(Op op) {
  std::vector<std::string_view> variants;
  for (const OpRow& row : op_table())
    if (row.op == op) variants.push_back(row.variant.empty() ? "default" : row.variant);
  if (variants.size() == 1 && variants[0] == "default") return std::string(op_name(op));
  return fmt::format("{}: {}", op_name(op), fmt::join(variants, ", "));
}

}  // namespace

int main(int argc, char** argv) {
  use_openblas_kernels_for_this_cpu(argv);
  CLI::App app{"Gradient-check every op of gradformer in f64 with central differences"};
  bool list = false;
  std::vector<std::string> only;
  uint64_t seed = 0;
  app.add_flag("--list", list, "List the names that can be checked and exit");
  app.add_option("--only", only, "Check only these ops, rows or layers (repeatable)");
  app.add_option("--seed", seed, "Seed for the inputs and the random projection")->capture_default_str();
  if (const int code = cli::parse(app, "gradformer-gradcheck", argc, argv); code >= 0) return code;

  if (list) {
    for (size_t op = 0; op < static_cast<size_t>(Op::count); ++op) fmt::print("{}\n", op_listing(static_cast<Op>(op)));
    for (const nn::LayerRow& row : nn::layer_table()) fmt::print("{}\n", nn::row_name(row));
    return 0;
  }
  auto is_op = [](std::string_view name) {
    return std::find(kOpNames.begin(), kOpNames.end(), name) != kOpNames.end();
  };
  auto is_layer = [](std::string_view name) {
    return std::find(nn::kLayerNames.begin(), nn::kLayerNames.end(), name) != nn::kLayerNames.end();
  };
  for (const std::string& name : only) {
    if (!is_op(name) && !find_op(name) && !is_layer(name) && !nn::find_layer(name)) {
      cli::print_error("gradformer-gradcheck", fmt::format("--only: unknown name '{}' (see --list)", name));
      return 2;
    }
  }

  fmt::print("{:<44} {:<36} {:>11} {:>11}  {}\n", "name", "input shapes", "max abs err", "max rel err", "result");
  int failed = 0, checked = 0;
  auto report = [&](std::string_view name, const std::vector<OpCheck>& checks) {
    for (const OpCheck& check : checks) {
      ++checked;
      failed += check.report.passed ? 0 : 1;
      fmt::print("{:<44} {:<36} {:>11.2e} {:>11.2e}  {}\n", fmt::format("{}{}", name, check.strided ? " (strided)" : ""),
                 shapes_of(check.inputs), check.report.max_abs_error, check.report.max_rel_error,
                 check.report.passed ? "pass" : "FAIL " + check.report.failure);
    }
  };
  auto wanted = [&](std::string_view name) {
    return only.empty() || std::find(only.begin(), only.end(), name) != only.end();
  };
  for (const OpRow& row : op_table()) {
    const std::string name = row_name(row);
    if (wanted(name) || wanted(op_name(row.op))) report(name, gradcheck_row(row, seed));
  }
  for (const nn::LayerRow& row : nn::layer_table())
    if (const std::string name = nn::row_name(row); wanted(name) || wanted(nn::layer_name(row.layer)))
      report(name, nn::gradcheck_layer(row, seed));
  fmt::print("{} checks, {} failed\n", checked, failed);
  return failed == 0 ? 0 : 1;
}
