// MappedFile::DropPages: the whole pages inside a range leave the process's resident set (read
// from /proc/self/smaps), its neighbours stay, and the bytes read back unchanged.
#include "common/mapped_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace iquest {
namespace {

// Resident kB of the mapping that starts at `begin`, from /proc/self/smaps; -1 if not found.
int64_t ResidentKb(const void* begin) {
  char prefix[32];
  std::snprintf(prefix, sizeof(prefix), "%lx-", reinterpret_cast<unsigned long>(begin));
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_mapping = false;
  while (std::getline(smaps, line)) {
    if (line.find('-') != std::string::npos && line.find(':') > line.find(' ')) {
      in_mapping = line.rfind(prefix, 0) == 0;  // A mapping's header line.
    } else if (in_mapping && line.rfind("Rss:", 0) == 0) {
      return std::stoll(line.substr(4));
    }
  }
  return -1;
}

int64_t Checksum(const MappedFile& file) {
  int64_t sum = 0;
  for (size_t i = 0; i < file.size(); ++i) sum = sum * 31 + file.data()[i];
  return sum;
}

TEST(MappedFileTest, DropPagesReleasesWholePagesInsideTheRange) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  constexpr size_t kPages = 16;
  testing::TempDir dir;
  std::vector<char> bytes(kPages * page);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + i / page);
  {
    std::ofstream out(dir.Join("w.bin"), std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MappedFile> file, MappedFile::Open(dir.Join("w.bin")));
  const int64_t checksum = Checksum(*file);  // Touches every page.
  const int64_t page_kb = static_cast<int64_t>(page / 1024);
  ASSERT_EQ(ResidentKb(file->data()), kPages * page_kb);

  // [100, 100 + 10 pages): pages 1..9 are whole inside it; pages 0 and 10 are shared.
  EXPECT_TRUE(file->DropPages(file->data() + 100, 10 * page));
  EXPECT_EQ(ResidentKb(file->data()), (kPages - 9) * page_kb);
  EXPECT_EQ(file->data()[0], bytes[0]);  // A kept page: still resident, nothing to read.
  EXPECT_EQ(ResidentKb(file->data()), (kPages - 9) * page_kb);

  // A range smaller than a page drops nothing.
  EXPECT_TRUE(file->DropPages(file->data() + 12 * page + 1, page - 2));
  EXPECT_EQ(ResidentKb(file->data()), (kPages - 9) * page_kb);

  // Read again: the same bytes, from the file.
  EXPECT_EQ(Checksum(*file), checksum);
  EXPECT_EQ(ResidentKb(file->data()), kPages * page_kb);
}

TEST(MappedFileTest, RangesOutsideTheMappingAreRefused) {
  testing::TempDir dir;
  {
    std::ofstream out(dir.Join("w.bin"), std::ios::binary);
    out << std::string(8192, 'x');
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MappedFile> file, MappedFile::Open(dir.Join("w.bin")));
  EXPECT_TRUE(file->Contains(file->data(), 8192));
  EXPECT_TRUE(file->Contains(file->data() + 8192, 0));
  EXPECT_FALSE(file->Contains(file->data() + 1, 8192));
  EXPECT_FALSE(file->Contains(file->data() - 1, 1));
  EXPECT_FALSE(file->Contains(file->data(), SIZE_MAX));
  std::vector<uint8_t> heap(8192);
  EXPECT_FALSE(file->DropPages(heap.data(), heap.size()));  // Anonymous memory: never dropped.
  EXPECT_FALSE(file->DropPages(file->data() + 4096, 8192));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(file->data()), 8192), std::string(8192, 'x'));
}

}  // namespace
}  // namespace iquest
