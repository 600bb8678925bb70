// warp.cuh's launcher in the simulator: launch_warp_logits on "logits" with the stages the case has (temperature,
// top_k, top_p, min_p, typical_p, epsilon, eta: 0-d for every row or 1-d per row), min_tokens_to_keep and
// filter_value (the op warp_logits_; out of place from rows with padding with "padded_input", as warp_logits), for
// tests/gpusim/test_sim_warp.py to compare with the CPU op.
#include "pysample/warp.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& logits = need(in, "logits");
  pysample::WarpParams params;
  read_shared_stages(in, device, params);
  params.typical_p = row_param<float, double>(in, "typical_p", device);
  params.epsilon = row_param<float, double>(in, "epsilon", device);
  params.eta = row_param<float, double>(in, "eta", device);
  if (const Array* min_keep = find(in, "min_tokens_to_keep")) params.min_tokens_to_keep = min_keep->item<int64_t>();
  if (const Array* filter = find(in, "filter_value")) params.filter_value = static_cast<float>(filter->item<double>());
  Case out;
  dispatch_logits(logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t batch = logits.size(0), vocab = logits.size(1);
    T* warped = device.copy<T>(logits);
    if (find(in, "padded_input")) {
      // out of place, as the op warp_logits: input rows `vocab + 5` apart, the output (NaN until written) apart
      const int64_t in_stride = vocab + 5;
      Array padded{logits.dtype, {batch, in_stride}, std::vector<unsigned char>(batch * in_stride * sizeof(T), 0xFF)};
      for (int64_t r = 0; r < batch; ++r) {
        std::memcpy(padded.bytes.data() + r * in_stride * sizeof(T), logits.bytes.data() + r * vocab * sizeof(T),
                    vocab * sizeof(T));
      }
      check(cudaMemset(warped, 0xFF, batch * vocab * sizeof(T)), "cudaMemset");
      check(pysample::launch_warp_logits<T>(device.copy<T>(padded), in_stride, warped, vocab, batch, vocab, params,
                                            nullptr),
            "launch_warp_logits");
    } else {
      check(pysample::launch_warp_logits<T>(warped, vocab, warped, vocab, batch, vocab, params, nullptr),
            "launch_warp_logits");
    }
    out["warped"] = Device::result(warped, logits);
  });
  return out;
}

}  // namespace sim
