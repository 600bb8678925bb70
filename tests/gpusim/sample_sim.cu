// sample.cuh's launcher in the simulator: launch_sample on "logits" with the stages the case has (temperature,
// top_k, top_p, min_p: 0-d for every row or 1-d per row), per-row "seed" and "step" and "draws" tokens per row (the
// op sample), for tests/gpusim/test_sim_sample.py to compare with the CPU op.
#include "pysample/sample.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& logits = need(in, "logits");
  pysample::SampleParams params;
  read_shared_stages(in, device, params);
  params.seed = device.copy<int64_t>(need(in, "seed"));
  params.step = device.copy<int64_t>(need(in, "step"));
  params.draws = need(in, "draws").item<int64_t>();
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  Array tokens_like{Dtype::i64, {batch, params.draws}, std::vector<unsigned char>(batch * params.draws * 8)};
  auto* tokens = device.zeros<int64_t>(batch * params.draws);
  dispatch_logits(logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    check(pysample::launch_sample<T>(device.copy<T>(logits), vocab, batch, vocab, params, tokens, nullptr),
          "launch_sample");
  });
  return {{"tokens", Device::result(tokens, tokens_like)}};
}

}  // namespace sim
