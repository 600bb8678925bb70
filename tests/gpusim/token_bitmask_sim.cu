// token_bitmask.cuh's launcher in the simulator: launch_apply_token_bitmask on "logits" by "bitmask" (int32, rows of
// any width), with "indices" (int64 or int32) and "vocab_size" (0-d int64) when the case has them (the op
// apply_token_bitmask_); logits transposed in memory with "column_major". For tests/gpusim/test_sim_token_bitmask.py
// to compare with the CPU op.
#include <algorithm>

#include "pysample/token_bitmask.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& logits = need(in, "logits");
  const Array& bitmask = need(in, "bitmask");
  const int64_t batch = logits.size(0), words = bitmask.size(1);
  const Array* size = find(in, "vocab_size");
  const int64_t vocab_size = size ? size->item<int64_t>() : std::min(logits.size(1), words * 32);
  const int32_t* bitmask_data = device.copy<int32_t>(bitmask);
  const Array* indices = find(in, "indices");
  const DeviceScores masked(in, logits, device);
  dispatch_float(logits.dtype, [&](auto score_zero) {
    using T = decltype(score_zero);
    auto launch = [&](auto index_zero) {
      using Index = decltype(index_zero);
      const Index* index = indices ? device.copy<Index>(*indices) : nullptr;
      check(pysample::launch_apply_token_bitmask<T, Index>(static_cast<T*>(masked.data), masked.row_stride,
                                                           masked.stride, batch, bitmask_data, words, 1, index,
                                                           indices ? indices->numel() : batch, vocab_size, nullptr),
            "launch_apply_token_bitmask");
    };
    if (indices) {
      dispatch_ids(indices->dtype, launch);
    } else {
      launch(int64_t());
    }
  });
  Case out;
  out["masked"] = masked.result();
  return out;
}

}  // namespace sim
