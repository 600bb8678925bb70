// ngram.cuh's launchers in the simulator: launch_no_repeat_ngram on "scores" when the case has "ngram_size", and
// launch_bias_sequences (CUB's radix sort, then the bias kernel) when it has "sequence_tokens" (the ops
// no_repeat_ngram_ and bias_sequences_); scores transposed in memory with "column_major". For
// tests/gpusim/test_sim_ngram.py to compare with the CPU ops.
#include "pysample/ngram.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& scores = need(in, "scores");
  const Array& ids = need(in, "ids");
  const int64_t batch = scores.size(0), vocab = scores.size(1), length = ids.size(1);
  const int64_t* lengths = optional_copy<int64_t>(in, "lengths", device);
  Case out;
  dispatch_float(scores.dtype, [&](auto score_zero) {
    using T = decltype(score_zero);
    dispatch_ids(ids.dtype, [&](auto id_zero) {
      using Id = decltype(id_zero);
      const Id* ids_data = device.copy<Id>(ids);
      if (find(in, "ngram_size")) {
        pysample::NgramParams params;
        params.ngram_size = row_param<int64_t, int64_t>(in, "ngram_size", device);
        params.lengths = lengths;
        params.source_lengths = optional_copy<int64_t>(in, "source_lengths", device);
        const Array* sources = find(in, "sources");
        const DeviceScores banned(in, scores, device);
        check(pysample::launch_no_repeat_ngram<T, Id>(
                  static_cast<T*>(banned.data), banned.row_stride, banned.stride, batch, vocab, ids_data, length,
                  sources ? device.copy<Id>(*sources) : nullptr, sources ? sources->size(0) : 0,
                  sources ? sources->size(1) : 0, params, nullptr),
              "launch_no_repeat_ngram");
        out["banned"] = banned.result();
      }
      if (find(in, "sequence_tokens")) {
        const Array& tokens = need(in, "sequence_tokens");
        const int64_t count = need(in, "sequence_biases").numel();
        size_t workspace_bytes = 0;
        check(pysample::bias_sequences_workspace_bytes(count, vocab, workspace_bytes), "workspace size");
        const DeviceScores biased(in, scores, device);
        check(pysample::launch_bias_sequences<T, Id>(
                  static_cast<T*>(biased.data), biased.row_stride, biased.stride, batch, vocab, ids_data, length,
                  lengths, device.copy<int64_t>(tokens), tokens.numel(),
                  device.copy<int64_t>(need(in, "sequence_offsets")), device.copy<float>(need(in, "sequence_biases")),
                  count, device.allocate(workspace_bytes), workspace_bytes, nullptr),
              "launch_bias_sequences");
        out["biased"] = biased.result();
      }
    });
  });
  return out;
}

}  // namespace sim
