// reorder.cuh's launcher in the simulator: launch_reorder_kv_cache on every array of the case named cache* (any
// dtype, contiguous) by "beam_idx", with "filled_length" when the case has it (the op reorder_kv_cache_), for
// tests/gpusim/test_sim_reorder.py to compare with the CPU op.
#include "pysample/reorder.cuh"
#include "sim_case.h"

namespace sim {

Case run(const Case& in) {
  Device device;
  const Array& beam_idx = need(in, "beam_idx");
  const Array* filled = find(in, "filled_length");
  const int64_t filled_length = filled ? filled->item<int64_t>() : -1;
  std::vector<std::pair<std::string, const Array*>> caches;
  std::vector<pysample::CacheRows> moved;
  std::vector<uint8_t*> data;
  for (const auto& [name, array] : in) {
    if (name.rfind("cache", 0) != 0) continue;
    std::vector<int64_t> strides(array.shape.size(), 1);
    for (size_t d = array.shape.size() - 1; d > 0; --d) strides[d - 1] = strides[d] * array.shape[d];
    pysample::CacheRows rows;
    static_cast<pysample::RowLayout&>(rows) = pysample::row_layout(static_cast<int64_t>(dtype_size(array.dtype)),
                                                                   array.shape.data(), strides.data(), filled_length);
    rows.data = device.copy<uint8_t>(array);
    caches.emplace_back(name, &array);
    data.push_back(rows.data);
    if (array.numel() > 0 && rows.span_bytes > 0) moved.push_back(rows);  // as the CUDA glue
  }
  const int64_t batch = beam_idx.numel();
  auto* workspace = device.zeros<int64_t>(pysample::reorder_workspace_size(batch));
  dispatch_ids(beam_idx.dtype, [&](auto id_zero) {
    using Index = decltype(id_zero);
    check(pysample::launch_reorder_kv_cache<Index>(moved.data(), static_cast<int64_t>(moved.size()),
                                                   device.copy<Index>(beam_idx), 1, batch, workspace, nullptr),
          "launch_reorder_kv_cache");
  });
  Case out;
  for (size_t i = 0; i < caches.size(); ++i) out[caches[i].first] = Device::result(data[i], *caches[i].second);
  return out;
}

}  // namespace sim
