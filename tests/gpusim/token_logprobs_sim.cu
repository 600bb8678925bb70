// token_logprobs.cuh's launcher in the simulator: launch_token_logprobs on "logits" (any float dtype; transposed in
// memory with "column_major") for "tokens" (int64 (batch, n)) and "num_top" (0-d int64). For
// tests/gpusim/test_sim_token_logprobs.py to compare with the CPU op.
#include "pysample/token_logprobs.cuh"
#include "sim_case.h"

namespace sim {

// An output array of `shape` and `dtype` to read back into.
inline Array output(Dtype dtype, std::vector<int64_t> shape) {
  Array array;
  array.dtype = dtype;
  array.shape = std::move(shape);
  array.bytes.resize(array.numel() * dtype_size(dtype));
  return array;
}

Case run(const Case& in) {
  Device device;
  const Array& logits = need(in, "logits");
  const Array& tokens = need(in, "tokens");
  const int64_t batch = logits.size(0), vocab = logits.size(1), n = tokens.size(1);
  const int64_t num_top = need(in, "num_top").item<int64_t>();
  const DeviceScores scores(in, logits, device);
  Case out;
  out["logprobs"] = output(Dtype::f32, {batch, n});
  out["ranks"] = output(Dtype::i64, {batch, n});
  out["top_ids"] = output(Dtype::i64, {batch, num_top});
  out["top_logprobs"] = output(Dtype::f32, {batch, num_top});
  float* logprobs = device.zeros<float>(batch * n);
  int64_t* ranks = device.zeros<int64_t>(batch * n);
  int64_t* top_ids = device.zeros<int64_t>(batch * num_top);
  float* top_logprobs = device.zeros<float>(batch * num_top);
  dispatch_float(logits.dtype, [&](auto score_zero) {
    using T = decltype(score_zero);
    check(pysample::launch_token_logprobs<T>(static_cast<const T*>(scores.data), scores.row_stride, scores.stride,
                                             batch, vocab, device.copy<int64_t>(tokens), n, num_top, logprobs, ranks,
                                             top_ids, top_logprobs, nullptr),
          "launch_token_logprobs");
  });
  out["logprobs"] = Device::result(logprobs, out["logprobs"]);
  out["ranks"] = Device::result(ranks, out["ranks"]);
  out["top_ids"] = Device::result(top_ids, out["top_ids"]);
  out["top_logprobs"] = Device::result(top_logprobs, out["top_logprobs"]);
  return out;
}

}  // namespace sim
