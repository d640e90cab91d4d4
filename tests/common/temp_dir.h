// Temporary directories for tests (a fixture with a fresh one per test, and one for tests that are not
// fixtures) and the checks that a call throws px::DataError naming given strings.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

#include "core/util/error.h"

namespace px::test {

// A new, empty directory <temp_directory_path()>/<prefix>_XXXXXX (mkdtemp, so unique even across
// processes). The caller removes it; throws std::system_error when it cannot be made.
inline std::filesystem::path make_temp_dir(const std::string& prefix) {
  std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr)
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  return pattern;
}

// Fixture base: dir_ is a fresh, empty directory for each test (px_<suite>_<test>_XXXXXX), removed with
// everything in it after the test. Fixtures that SetUp more must call TempDirTest::SetUp() first.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string prefix = std::string("px_") + test->test_suite_name() + "_" + test->name();
    for (char& c : prefix)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';  // Suite/0, Name/1
    prefix.resize(std::min<size_t>(prefix.size(), 120));
    dir_ = make_temp_dir(prefix);
  }
  void TearDown() override {
    std::error_code ec;  // dir_ is empty when SetUp failed
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // `name` (which may contain '/') inside dir_.
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

// Runs f, which must throw px::DataError whose what() contains every one of `parts`.
template <typename F>
void expect_data_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no DataError; expected one mentioning " << (parts.empty() ? std::string() : parts.front());
  } catch (const DataError& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// Runs f and returns the what() of the px::DataError it throws, or "" when it throws none.
template <typename F>
std::string data_error_of(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace px::test
