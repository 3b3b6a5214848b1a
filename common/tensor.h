// TensorView: a non-owning view of a dense, row-major tensor of up to four dimensions.
// The memory may be host or device memory; which one is the owning backend's business.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "common/check.h"
#include "common/dtype.h"

namespace iquest {

inline constexpr int kMaxTensorRank = 4;

class TensorView {
 public:
  TensorView() = default;
  TensorView(void* data, DType dtype, std::initializer_list<int64_t> shape);
  TensorView(void* data, DType dtype, const int64_t* shape, int rank);

  void* data() const { return data_; }
  DType dtype() const { return dtype_; }
  int rank() const { return rank_; }
  int64_t dim(int i) const {
    CHECK(i >= 0 && i < rank_) << "dim " << i << " of a rank-" << rank_ << " tensor";
    return shape_[i];
  }
  int64_t numel() const;
  size_t num_bytes() const { return DTypeBytes(dtype_, numel()); }
  bool empty() const { return data_ == nullptr; }

  // Typed access; CHECKs that the element type matches.
  template <typename T>
  T* as() const;

  // Rows [begin, begin + count) along dimension 0.
  TensorView Rows(int64_t begin, int64_t count) const;
  // The same memory seen with another shape of the same number of elements.
  TensorView Reshape(std::initializer_list<int64_t> shape) const;

  std::string ShapeString() const;  // "[4, 64]"
  bool ShapeIs(std::initializer_list<int64_t> shape) const;

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  std::array<int64_t, kMaxTensorRank> shape_{};
  int rank_ = 0;
};

template <>
inline float* TensorView::as<float>() const {
  CHECK(dtype_ == DType::kF32) << "tensor is " << DTypeName(dtype_) << ", not f32";
  return static_cast<float*>(data_);
}

template <>
inline int32_t* TensorView::as<int32_t>() const {
  CHECK(dtype_ == DType::kI32) << "tensor is " << DTypeName(dtype_) << ", not i32";
  return static_cast<int32_t*>(data_);
}

template <>
inline uint16_t* TensorView::as<uint16_t>() const {
  CHECK(dtype_ == DType::kF16 || dtype_ == DType::kBF16)
      << "tensor is " << DTypeName(dtype_) << ", not a 16-bit float";
  return static_cast<uint16_t*>(data_);
}

}  // namespace iquest
