// penalty.cuh's launchers in the simulator: launch_apply_penalties on "scores" and, when the case has "counts",
// launch_count_tokens into "counts" / "seen" then launch_apply_penalty_counts on "scores" from those tables (the ops
// apply_penalties_, count_tokens_, apply_penalty_counts_); scores transposed in memory with "column_major". For
// tests/gpusim/test_sim_penalty.py to compare with the CPU ops.
#include "pysample/penalty.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& scores = need(in, "scores");
  const Array& ids = need(in, "ids");
  const int64_t batch = scores.size(0), vocab = scores.size(1), length = ids.size(1);
  pysample::PenaltyParams params;
  params.repetition = row_param<float, double>(in, "repetition", device);
  params.presence = row_param<float, double>(in, "presence", device);
  params.frequency = row_param<float, double>(in, "frequency", device);
  pysample::HistoryScope scope;
  scope.history_start = row_param<int64_t, int64_t>(in, "history_start", device);
  scope.output_start = row_param<int64_t, int64_t>(in, "output_start", device);
  const int64_t* slot_of = optional_copy<int64_t>(in, "slots", device);
  Case out;
  dispatch_float(scores.dtype, [&](auto score_zero) {
    using T = decltype(score_zero);
    dispatch_ids(ids.dtype, [&](auto id_zero) {
      using Id = decltype(id_zero);
      const Id* ids_data = device.copy<Id>(ids);
      const DeviceScores penalized(in, scores, device);
      check(pysample::launch_apply_penalties<T, Id>(static_cast<T*>(penalized.data), penalized.row_stride,
                                                    penalized.stride, batch, vocab, ids_data, ids.size(0), length,
                                                    params, scope, device.zeros<uint32_t>(batch * vocab), nullptr),
            "launch_apply_penalties");
      out["penalized"] = penalized.result();
      const Array* counts = find(in, "counts");
      if (!counts) return;

      const int64_t slots = counts->size(0);
      auto* counted = device.copy<uint32_t>(*counts);
      auto* seen = device.copy<uint32_t>(need(in, "seen"));
      check(pysample::launch_count_tokens<Id>(counted, seen, slots, vocab, ids_data, ids.size(0), length, slot_of,
                                              scope, nullptr),
            "launch_count_tokens");
      out["counts"] = Device::result(counted, *counts);
      out["seen"] = Device::result(seen, need(in, "seen"));
      const DeviceScores from_counts(in, scores, device);
      check(pysample::launch_apply_penalty_counts<T>(static_cast<T*>(from_counts.data), from_counts.row_stride,
                                                     from_counts.stride, batch, vocab, counted, seen, slots, slot_of,
                                                     params, nullptr),
            "launch_apply_penalty_counts");
      out["penalized_from_counts"] = from_counts.result();
    });
  });
  return out;
}

}  // namespace sim
