#include "common/tensor.h"

#include <sstream>

namespace iquest {

TensorView::TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape)
    : TensorView(data, dtype, shape.begin(), static_cast<int>(shape.size())) {}

TensorView::TensorView(void* data, DType dtype, const int64_t* shape, int rank)
    : data_(data), dtype_(dtype), rank_(rank) {
  CHECK(rank >= 1 && rank <= kMaxTensorRank) << "rank " << rank;
  for (int i = 0; i < rank; ++i) {
    CHECK_GE(shape[i], 0);
    shape_[i] = shape[i];
  }
}

int64_t TensorView::numel() const {
  if (rank_ == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < rank_; ++i) n *= shape_[i];
  return n;
}

TensorView TensorView::Rows(int64_t begin, int64_t count) const {
  CHECK(rank_ >= 1 && begin >= 0 && count >= 0 && begin + count <= shape_[0])
      << "rows [" << begin << ", " << begin + count << ") of " << ShapeString();
  int64_t row_elems = 1;
  for (int i = 1; i < rank_; ++i) row_elems *= shape_[i];
  TensorView out = *this;
  // A quantized row is whole blocks (DTypeBytes CHECKs it).
  out.data_ = static_cast<char*>(data_) + DTypeBytes(dtype_, begin * row_elems);
  out.shape_[0] = count;
  return out;
}

TensorView TensorView::Reshape(std::initializer_list<int64_t> shape) const {
  TensorView out(data_, dtype_, shape);
  CHECK_EQ(out.numel(), numel()) << "reshape " << ShapeString() << " to " << out.ShapeString();
  return out;
}

std::string TensorView::ShapeString() const {
  std::ostringstream out;
  out << "[";
  for (int i = 0; i < rank_; ++i) out << (i == 0 ? "" : ", ") << shape_[i];
  out << "]";
  return out.str();
}

bool TensorView::ShapeIs(std::initializer_list<int64_t> shape) const {
  if (static_cast<int>(shape.size()) != rank_) return false;
  int i = 0;
  for (int64_t d : shape) {
    if (shape_[i++] != d) return false;
  }
  return true;
}

}  // namespace iquest
