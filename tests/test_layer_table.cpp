// Walks the layer table: every layer, parameters included, passes gradcheck in f64 on each case with its inputs
// contiguous and strided.
#include "nn/layer_table.h"

#include <doctest/doctest.h>

using namespace gradformer;

TEST_CASE("layer table: every layer passes gradcheck over its inputs and parameters") {
  for (const nn::LayerRow& row : nn::layer_table()) {
    for (const OpCheck& check : nn::gradcheck_layer(row, 1)) {
      CAPTURE(nn::row_name(row));
      CAPTURE(check.which);
      CAPTURE(check.strided);
      INFO(check.report.failure);
      CHECK(check.report.passed);
    }
  }
}

TEST_CASE("layer table: names are unique") {
  for (const nn::LayerRow& row : nn::layer_table()) CHECK(nn::find_layer(nn::row_name(row)) == &row);
}
