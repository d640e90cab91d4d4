// Tensor comparison for tests: elementwise |a - e| <= atol + rtol * |e| with a report of the worst element.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "core/tensor/tensor.h"

namespace px::test {

// Same shape and every element close; the failure message names `what`, the worst index and values.
::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, double rtol, double atol,
                                     const std::string& what = "");

}  // namespace px::test

#define EXPECT_ALL_CLOSE(actual, expected, rtol, atol) \
  EXPECT_TRUE(::px::test::all_close((actual), (expected), (rtol), (atol), #actual))
