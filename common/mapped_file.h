// A read-only memory mapping of a whole file, unmapped on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace iquest {

class MappedFile {
 public:
  // Maps `path` read-only. An empty file maps to size 0 with a null data pointer.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Whether [begin, begin + num_bytes) lies in this mapping.
  bool Contains(const void* begin, size_t num_bytes) const;
  // Gives the whole pages inside [begin, begin + num_bytes) back to the kernel (MADV_DONTNEED):
  // for a weight whose bytes a backend has copied, so that the process does not keep two
  // copies resident. The contents do not change: the pages are clean file pages, read again from
  // the file if touched. Returns false (and drops nothing) for a range outside this mapping.
  bool DropPages(const void* begin, size_t num_bytes) const;

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}

  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

// Reads a whole (small) file into a string, e.g. config.json.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace iquest
