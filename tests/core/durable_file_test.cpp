// write_file_durably and its parts: content written and replaced, no temporary left behind, and failures
// thrown as the caller's px::Error type naming the path.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "core/util/durable_file.h"
#include "core/util/error.h"
#include "tests/common/temp_dir.h"

namespace px {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

class DurableFile : public test::TempDirTest {};

TEST_F(DurableFile, WritesAndReplacesWithoutLeavingATemporary) {
  write_file_durably<DataError>(path("latest"), "step_1\n");
  EXPECT_EQ(read_file(path("latest")), "step_1\n");
  write_file_durably<DataError>(path("latest"), std::string("step_2\n\0x", 9));
  EXPECT_EQ(read_file(path("latest")), std::string("step_2\n\0x", 9));
  EXPECT_FALSE(fs::exists(path("latest.tmp")));
  write_file_durably<DataError>(path("empty"), "");
  EXPECT_TRUE(fs::is_regular_file(path("empty")));
  EXPECT_EQ(fs::file_size(path("empty")), 0u);
}

TEST_F(DurableFile, FailuresThrowTheCallersTypeNamingThePath) {
  const std::string missing = path("no/such/dir/file");
  try {
    write_file_durably<CheckpointError>(missing, "x");
    ADD_FAILURE() << "no CheckpointError";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find(missing + ".tmp: cannot create: "), std::string::npos) << e.what();
  }
  fs::create_directory(path("taken"));  // a directory where the file should go: the rename fails
  EXPECT_THROW(write_file_durably<ConfigError>(path("taken"), "x"), ConfigError);
  EXPECT_FALSE(fs::exists(path("taken.tmp")));  // the temporary is removed
  EXPECT_TRUE(fs::is_directory(path("taken")));
  EXPECT_THROW(sync_to_disk<DataError>(path("absent"), /*directory=*/false), DataError);
  EXPECT_THROW(rename_file<Error>(path("absent"), path("b")), Error);
}

TEST_F(DurableFile, SyncsFilesAndDirectories) {
  write_file_synced<Error>(path("f"), "abc");
  EXPECT_EQ(read_file(path("f")), "abc");
  sync_to_disk<Error>(path("f"), /*directory=*/false);
  sync_to_disk<Error>(dir_.string(), /*directory=*/true);
}

}  // namespace
}  // namespace px
