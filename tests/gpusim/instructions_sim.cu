// The instructions our simulator patches (tests/gpusim/patches) implement or fix, each run on the device and on the
// host by the same CUDA header function (the host side is CUDA's own software version), for
// tests/gpusim/test_sim_instructions.py to compare bit for bit:
//   float -> bfloat16: cvt.rn.bf16.f32 (02-bfloat16-cvt)       bfloat16 -> float: mov.b32 d, {0, h} (01, 02)
//   float -> half: cvt.rn.f16.f32, ties to even and the canonical NaN (03-half-conversion)
//   cudaFuncGetAttributes' ptxVersion: the PTX's target architecture, 80 (04-function-ptx-version)
//   64-bit integer literals: mov.u64 / add.s64 with constants beyond 32 bits (05-64-bit-integer-literals)
#include "sim_case.h"

namespace sim {

__global__ void convert_kernel(const float* x, int64_t n, __nv_bfloat16* bf16, float* bf16_back, __half* f16) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    bf16[i] = __float2bfloat16_rn(x[i]);
    bf16_back[i] = __bfloat162float(bf16[i]);
    f16[i] = __float2half_rn(x[i]);
  }
}

__global__ void literals_kernel(const int64_t* x, int64_t* constants, int64_t* sums) {
  const int64_t literals[] = {-4503599627370496, 0x123456789ABCDEF0, 0x100000000, -1, 0x7FFFFFFF80000000};
#pragma unroll
  for (int i = 0; i < 5; ++i) constants[i] = literals[i], sums[i] = x[i] + literals[i];
}

Case run(const Case& in) {
  Device device;
  const Array& x = need(in, "x");
  const int64_t n = x.numel();
  auto* bf16 = static_cast<__nv_bfloat16*>(device.allocate(n * 2));
  auto* bf16_back = static_cast<float*>(device.allocate(n * 4));
  auto* f16 = static_cast<__half*>(device.allocate(n * 2));
  convert_kernel<<<1, 128>>>(device.copy<float>(x), n, bf16, bf16_back, f16);
  check(cudaGetLastError(), "convert_kernel");

  Array bf16_like{Dtype::bf16, x.shape, std::vector<unsigned char>(n * 2)}, f16_like{Dtype::f16, x.shape, bf16_like.bytes};
  Case out{{"bf16", Device::result(bf16, bf16_like)}, {"bf16_back", Device::result(bf16_back, x)},
           {"f16", Device::result(f16, f16_like)}};
  Array host_bf16 = bf16_like, host_bf16_back = x, host_f16 = f16_like;
  for (int64_t i = 0; i < n; ++i) {
    const __nv_bfloat16 b = __float2bfloat16_rn(x.data<float>()[i]);
    const __half h = __float2half_rn(x.data<float>()[i]);
    const float back = __bfloat162float(b);
    std::memcpy(host_bf16.bytes.data() + 2 * i, &b, 2);
    std::memcpy(host_f16.bytes.data() + 2 * i, &h, 2);
    std::memcpy(host_bf16_back.bytes.data() + 4 * i, &back, 4);
  }
  out["host_bf16"] = host_bf16, out["host_bf16_back"] = host_bf16_back, out["host_f16"] = host_f16;

  cudaFuncAttributes attributes{};
  check(cudaFuncGetAttributes(&attributes, convert_kernel), "cudaFuncGetAttributes");
  Array version{Dtype::i64, {}, std::vector<unsigned char>(8)};
  const int64_t ptx_version = attributes.ptxVersion;
  std::memcpy(version.bytes.data(), &ptx_version, 8);
  out["ptx_version"] = version;

  const Array& x64 = need(in, "x64");
  auto* constants = static_cast<int64_t*>(device.allocate(5 * 8));
  auto* sums = static_cast<int64_t*>(device.allocate(5 * 8));
  literals_kernel<<<1, 1>>>(device.copy<int64_t>(x64), constants, sums);
  check(cudaGetLastError(), "literals_kernel");
  out["constants"] = Device::result(constants, x64), out["sums"] = Device::result(sums, x64);
  return out;
}

}  // namespace sim
