// What the simulator test programs share: case files (named arrays, written by tests/gpusim/simcase.py: the
// inputs of one launch, then the arrays it produced), device copies of them, and a main that runs every case given
// on the command line in one process (the simulator loads the program's PTX once).
//   program IN OUT [IN OUT ...]    a case's failure writes an array "error" (its message) and goes on
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "pysample/stages.h"

namespace sim {

// Element types, as simcase.py numbers them.
enum class Dtype : uint8_t { f32 = 0, f64 = 1, f16 = 2, bf16 = 3, i64 = 4, i32 = 5, u8 = 6 };

inline size_t dtype_size(Dtype dtype) {
  switch (dtype) {
    case Dtype::f64:
    case Dtype::i64: return 8;
    case Dtype::f32:
    case Dtype::i32: return 4;
    case Dtype::f16:
    case Dtype::bf16: return 2;
    case Dtype::u8: return 1;
  }
  throw std::runtime_error("unknown dtype");
}

struct Array {
  Dtype dtype = Dtype::u8;
  std::vector<int64_t> shape;
  std::vector<unsigned char> bytes;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t size(size_t dim) const { return shape.at(dim); }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(bytes.data());
  }
  template <typename T>
  T item() const {
    if (bytes.size() != sizeof(T)) throw std::runtime_error("not a scalar of the expected type");
    T value;
    std::memcpy(&value, bytes.data(), sizeof value);
    return value;
  }
};

using Case = std::map<std::string, Array>;

inline Case read_case(const char* path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path, "rb"), &std::fclose);
  if (!file) throw std::runtime_error(std::string("cannot open ") + path);
  auto read = [&](void* to, size_t bytes) {
    if (bytes && std::fread(to, 1, bytes, file.get()) != bytes) throw std::runtime_error("truncated case file");
  };
  uint32_t count;
  read(&count, sizeof count);
  Case result;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t name_length, ndim;
    read(&name_length, sizeof name_length);
    std::string name(name_length, '\0');
    read(name.data(), name_length);
    Array array;
    read(&array.dtype, 1);
    read(&ndim, sizeof ndim);
    array.shape.resize(ndim);
    read(array.shape.data(), ndim * sizeof(int64_t));
    array.bytes.resize(array.numel() * dtype_size(array.dtype));
    read(array.bytes.data(), array.bytes.size());
    result.emplace(std::move(name), std::move(array));
  }
  return result;
}

inline void write_case(const char* path, const Case& arrays) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path, "wb"), &std::fclose);
  if (!file) throw std::runtime_error(std::string("cannot write ") + path);
  auto write = [&](const void* from, size_t bytes) { std::fwrite(from, 1, bytes, file.get()); };
  const uint32_t count = static_cast<uint32_t>(arrays.size());
  write(&count, sizeof count);
  for (const auto& [name, array] : arrays) {
    const uint32_t name_length = static_cast<uint32_t>(name.size()), ndim = static_cast<uint32_t>(array.shape.size());
    write(&name_length, sizeof name_length);
    write(name.data(), name_length);
    write(&array.dtype, 1);
    write(&ndim, sizeof ndim);
    write(array.shape.data(), ndim * sizeof(int64_t));
    write(array.bytes.data(), array.bytes.size());
  }
}

inline void check(cudaError_t error, const char* what) {
  if (error != cudaSuccess) {
    throw std::runtime_error(std::string(what) + ": CUDA error " + std::to_string(static_cast<int>(error)) + " (" +
                             cudaGetErrorString(error) + ")");
  }
}

// The device copies of one case's arrays, freed with it.
class Device {
 public:
  ~Device() {
    for (void* pointer : allocations_) cudaFree(pointer);
  }

  void* allocate(size_t bytes) {
    void* pointer = nullptr;
    check(cudaMalloc(&pointer, bytes == 0 ? 1 : bytes), "cudaMalloc");
    allocations_.push_back(pointer);
    return pointer;
  }
  template <typename T>
  T* zeros(int64_t count) {
    void* pointer = allocate(count * sizeof(T));
    check(cudaMemset(pointer, 0, count * sizeof(T)), "cudaMemset");
    return static_cast<T*>(pointer);
  }
  template <typename T>
  T* copy(const Array& array) {
    void* pointer = allocate(array.bytes.size());
    check(cudaMemcpy(pointer, array.bytes.data(), array.bytes.size(), cudaMemcpyHostToDevice), "cudaMemcpy to device");
    return static_cast<T*>(pointer);
  }
  // `array`'s values after the launch: the device buffer `pointer` with its shape and dtype.
  static Array result(const void* pointer, const Array& like) {
    Array out = like;
    check(cudaMemcpy(out.bytes.data(), pointer, out.bytes.size(), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return out;
  }

 private:
  std::vector<void*> allocations_;
};

inline const Array* find(const Case& arrays, const std::string& name) {
  const auto it = arrays.find(name);
  return it == arrays.end() ? nullptr : &it->second;
}

inline const Array& need(const Case& arrays, const std::string& name) {
  const Array* array = find(arrays, name);
  if (!array) throw std::runtime_error("case has no array " + name);
  return *array;
}

// A parameter that is a 0-d array (one value for every row), a 1-d array (a value per row) or absent, as the op's
// `name` / `name_rows` pair.
template <typename Stored, typename Value>
pysample::RowParam<Stored, Value> row_param(const Case& arrays, const std::string& name, Device& device) {
  pysample::RowParam<Stored, Value> param;
  const Array* array = find(arrays, name);
  if (!array) return param;
  param.enabled = true;
  if (array->shape.empty()) {
    param.value = array->item<Value>();
  } else {
    param.rows = device.copy<Stored>(*array);
  }
  return param;
}

// Scores (batch, vocab) on the device, row by row or, when the case has "column_major", token by token: a transposed
// view (row stride 1, token stride batch), since the launchers take any strides.
struct DeviceScores {
  void* data;
  int64_t row_stride;
  int64_t stride;

  DeviceScores(const Case& arrays, const Array& scores, Device& device)
      : like_(scores), transposed_(find(arrays, "column_major") != nullptr) {
    const int64_t batch = scores.size(0), vocab = scores.size(1);
    row_stride = transposed_ ? 1 : vocab;
    stride = transposed_ ? batch : 1;
    Array stored = scores;
    if (transposed_) permute(scores.bytes.data(), stored.bytes.data(), false);
    data = device.copy<unsigned char>(stored);
  }

  // The scores after the launch, (batch, vocab) row by row.
  Array result() const {
    Array stored = Device::result(data, like_), out = like_;
    if (!transposed_) return stored;
    permute(stored.bytes.data(), out.bytes.data(), true);
    return out;
  }

 private:
  const Array& like_;
  bool transposed_;

  // Row-major (batch, vocab) to column-major, or back.
  void permute(const unsigned char* from, unsigned char* to, bool back) const {
    const int64_t batch = like_.size(0), vocab = like_.size(1), size = static_cast<int64_t>(dtype_size(like_.dtype));
    for (int64_t r = 0; r < batch; ++r) {
      for (int64_t t = 0; t < vocab; ++t) {
        const int64_t row_major = (r * vocab + t) * size, column_major = (t * batch + r) * size;
        std::memcpy(to + (back ? row_major : column_major), from + (back ? column_major : row_major), size);
      }
    }
  }
};

// The stages the warper and the sampler share, as row_param reads them.
template <typename Params>
void read_shared_stages(const Case& arrays, Device& device, Params& params) {
  params.temperature = row_param<float, double>(arrays, "temperature", device);
  params.top_k = row_param<int64_t, int64_t>(arrays, "top_k", device);
  params.top_p = row_param<float, double>(arrays, "top_p", device);
  params.min_p = row_param<float, double>(arrays, "min_p", device);
}

// A device pointer to an optional array, null when absent.
template <typename T>
T* optional_copy(const Case& arrays, const std::string& name, Device& device) {
  const Array* array = find(arrays, name);
  return array ? device.copy<T>(*array) : nullptr;
}

// Calls f(T()) with T the C++ type of a float dtype (the 16-bit ones as CUDA's own types). Without float64 for the
// launchers that take logits (the warper, the sampler, the beam step), as csrc's dispatch_logits.
template <bool WithFloat64 = true, typename F>
void dispatch_float(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::f32: return f(float());
    case Dtype::f64:
      if constexpr (WithFloat64) {
        return f(double());
      } else {
        throw std::runtime_error("this launcher takes no float64 logits");
      }
    case Dtype::f16: return f(__half());
    case Dtype::bf16: return f(__nv_bfloat16());
    default: throw std::runtime_error("not a float dtype");
  }
}

template <typename F>
void dispatch_logits(Dtype dtype, F&& f) {
  dispatch_float<false>(dtype, f);
}

// Calls f(Id()) with Id the C++ type of token ids (int64 or int32).
template <typename F>
void dispatch_ids(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::i64: return f(int64_t());
    case Dtype::i32: return f(int32_t());
    default: throw std::runtime_error("ids must be int64 or int32");
  }
}

// Runs one case: reads its inputs, returns the arrays to compare. Each program defines it.
Case run(const Case& inputs);

}  // namespace sim

int main(int argc, char** argv) {
  if (argc < 3 || argc % 2 != 1) {
    std::fprintf(stderr, "usage: %s IN OUT [IN OUT ...]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; i += 2) {
    sim::Case outputs;
    try {
      outputs = sim::run(sim::read_case(argv[i]));
      sim::check(cudaDeviceSynchronize(), "kernel");
    } catch (const std::exception& error) {
      const std::string message = error.what();
      sim::Array array;
      array.shape = {static_cast<int64_t>(message.size())};
      array.bytes.assign(message.begin(), message.end());
      outputs = {{"error", array}};
      cudaGetLastError();  // a launch error is reported once
    }
    sim::write_case(argv[i + 1], outputs);
  }
  return 0;
}
