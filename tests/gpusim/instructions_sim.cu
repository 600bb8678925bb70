// The instructions our simulator patches (tests/gpusim/patches) implement or fix, each run on the device and on the
// host by the same CUDA header function (the host side is CUDA's own software version), for
// tests/gpusim/test_sim_instructions.py to compare bit for bit:
//   float -> bfloat16: cvt.rn.bf16.f32 (02-bfloat16-cvt)       bfloat16 -> float: mov.b32 d, {0, h} (01, 02)
//   float -> half: cvt.rn.f16.f32, ties to even and the canonical NaN (03-half-conversion)
//   cudaFuncGetAttributes' ptxVersion: the PTX's target architecture, 80 (04-function-ptx-version)
//   64-bit integer literals: mov.u64 / add.s64 with constants beyond 32 bits (05-64-bit-integer-literals)
//   a called function reading its caller's local frame by pointer: cvta.to.local + ld.local (06-absolute-local-...)
//   int64 / uint64 -> double / float: cvt.rn.f64.s64 and the like (07-cvt-from-64-bit-integers)
//   double / float -> 64- and 32-bit integers: cvt.rzi.u64.f64 and the like, clamped, NaN 0 (08-cvt-float-to-integer)
//   fused multiply-add: fma.rn.f32 / fma.rn.f64, one rounding (09-fused-multiply-add)
//   the high half of a 64-bit product: mul.hi.u64 / mul.hi.s64 (10-mul-hi-64)
//   a vector of immediates: st.param.v4.b8 [param], {1, 0, 0, 1} (01-vector-immediates)
//   %lanemask_eq / le / lt / ge / gt (11-lane-masks)
//   a shuffle whose destination is its source: CUB's 64-bit warp scan (12-shfl-reads-before-writes)
#include <cmath>
#include <cub/warp/warp_scan.cuh>

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

// A function called (not inlined) with pointers into its caller's frame, read there with cvta.to.local + ld.local:
// `this` (an array indexed at run time) and `scale`.
struct Frame {
  int64_t values[4];
  const double* scale;

  __host__ __device__ __noinline__ double pick(int64_t i) const { return static_cast<double>(values[i & 3]) * *scale; }
};

// Four bytes passed by value with constant values: st.param.v4.b8 [param], {1, 0, 0, 1} (two callers, so that the
// compiler does not fold them into the function).
struct alignas(4) Flags {
  bool a, b, c, d;
};

__host__ __device__ __noinline__ int64_t flag_bits(Flags flags, int64_t x) {
  return x * 16 + flags.a * 8 + flags.b * 4 + flags.c * 2 + flags.d;
}

__global__ void call_kernel(const int64_t* x, int64_t n, double* out, int64_t* flagged) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double scale = 0.5 * static_cast<double>(i);
    const Frame frame{{x[i], 2 * x[i], -x[i], 7}, &scale};
    out[i] = frame.pick(i);
    flagged[i] = flag_bits(Flags{true, false, false, true}, x[i]) - flag_bits(Flags{false, true, true, false}, i);
  }
}

__global__ void mul_hi_kernel(const int64_t* x, int64_t n, int64_t* high) {
  for (int64_t i = threadIdx.x; i + 1 < n; i += blockDim.x) {
    high[2 * i] = __mul64hi(x[i], x[i + 1]);
    high[2 * i + 1] = static_cast<int64_t>(__umul64hi(static_cast<uint64_t>(x[i]), static_cast<uint64_t>(x[i + 1])));
  }
}

__global__ void int_to_float_kernel(const int64_t* x, int64_t n, double* s_double, float* s_float, double* u_double,
                                    float* u_float) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    s_double[i] = static_cast<double>(x[i]), s_float[i] = static_cast<float>(x[i]);
    u_double[i] = static_cast<double>(static_cast<uint64_t>(x[i]));
    u_float[i] = static_cast<float>(static_cast<uint64_t>(x[i]));
  }
}

__global__ void float_to_integer_kernel(const double* x, int64_t n, int64_t* from_double, int64_t* from_float) {
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double d = x[i];
    const float f = static_cast<float>(d);
    // cvt.rzi.{s64,u64,s32,u32}.{f64,f32}; the 32-bit results widened so that one array holds them
    from_double[4 * i] = __double2ll_rz(d), from_double[4 * i + 1] = static_cast<int64_t>(__double2ull_rz(d));
    from_double[4 * i + 2] = __double2int_rz(d), from_double[4 * i + 3] = __double2uint_rz(d);
    from_float[4 * i] = __float2ll_rz(f), from_float[4 * i + 1] = static_cast<int64_t>(__float2ull_rz(f));
    from_float[4 * i + 2] = __float2int_rz(f), from_float[4 * i + 3] = __float2uint_rz(f);
  }
}

__global__ void fma_kernel(const double* x, int64_t n, double* fused, float* fused_float) {
  for (int64_t i = threadIdx.x; i + 2 < n; i += blockDim.x) {
    fused[i] = fma(x[i], x[i + 1], x[i + 2]);
    fused_float[i] = fmaf(static_cast<float>(x[i]), static_cast<float>(x[i + 1]), static_cast<float>(x[i + 2]));
  }
}

__global__ void warp_kernel(uint32_t* masks, uint64_t* scanned) {
  uint32_t eq, le, lt, ge, gt;
  asm("mov.u32 %0, %%lanemask_eq;" : "=r"(eq));
  asm("mov.u32 %0, %%lanemask_le;" : "=r"(le));
  asm("mov.u32 %0, %%lanemask_lt;" : "=r"(lt));
  asm("mov.u32 %0, %%lanemask_ge;" : "=r"(ge));
  asm("mov.u32 %0, %%lanemask_gt;" : "=r"(gt));
  const unsigned lane = threadIdx.x;
  masks[5 * lane] = eq, masks[5 * lane + 1] = le, masks[5 * lane + 2] = lt, masks[5 * lane + 3] = ge;
  masks[5 * lane + 4] = gt;
  __shared__ typename cub::WarpScan<unsigned long long>::TempStorage storage;
  unsigned long long sum;
  cub::WarpScan<unsigned long long>(storage).InclusiveSum((1ull << 33) + lane * lane, sum);
  scanned[lane] = sum;
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

  Array bf16_like{Dtype::bf16, x.shape, std::vector<unsigned char>(n * 2)};
  Array f16_like{Dtype::f16, x.shape, bf16_like.bytes};
  Case out{{"bf16", Device::result(bf16, bf16_like)},
           {"bf16_back", Device::result(bf16_back, x)},
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

  const Array& integers = need(in, "integers");
  const int64_t count = integers.numel();
  Array doubles{Dtype::f64, integers.shape, std::vector<unsigned char>(count * 8)};
  Array floats{Dtype::f32, integers.shape, std::vector<unsigned char>(count * 4)};
  auto* d_integers = device.copy<int64_t>(integers);
  auto* called = static_cast<double*>(device.allocate(count * 8));
  auto* flagged = static_cast<int64_t*>(device.allocate(count * 8));
  call_kernel<<<1, 128>>>(d_integers, count, called, flagged);
  check(cudaGetLastError(), "call_kernel");
  out["called"] = Device::result(called, doubles), out["flagged"] = Device::result(flagged, integers);
  const int64_t pairs = count > 1 ? count - 1 : 0;
  Array high_like{Dtype::i64, {pairs, 2}, std::vector<unsigned char>(pairs * 16)};
  auto* high = static_cast<int64_t*>(device.allocate(pairs * 16));
  mul_hi_kernel<<<1, 128>>>(d_integers, count, high);
  check(cudaGetLastError(), "mul_hi_kernel");
  out["mul_hi"] = Device::result(high, high_like);
  Array host_flagged = integers, host_high = high_like;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t* v = integers.data<int64_t>() + i;
    const int64_t f = flag_bits(Flags{true, false, false, true}, v[0]) - flag_bits(Flags{false, true, true, false}, i);
    std::memcpy(host_flagged.bytes.data() + 8 * i, &f, 8);
    if (i + 1 < count) {
      const int64_t h[2] = {
          static_cast<int64_t>((static_cast<__int128>(v[0]) * v[1]) >> 64),
          static_cast<int64_t>(
              (static_cast<unsigned __int128>(static_cast<uint64_t>(v[0])) * static_cast<uint64_t>(v[1])) >> 64)};
      std::memcpy(host_high.bytes.data() + 16 * i, h, 16);
    }
  }
  out["host_flagged"] = host_flagged, out["host_mul_hi"] = host_high;
  std::vector<void*> converted;
  for (const Array* like : {&doubles, &floats, &doubles, &floats}) {
    converted.push_back(device.allocate(like->bytes.size()));
  }
  int_to_float_kernel<<<1, 128>>>(d_integers, count, static_cast<double*>(converted[0]),
                                  static_cast<float*>(converted[1]), static_cast<double*>(converted[2]),
                                  static_cast<float*>(converted[3]));
  check(cudaGetLastError(), "int_to_float_kernel");
  out["s_double"] = Device::result(converted[0], doubles), out["s_float"] = Device::result(converted[1], floats);
  out["u_double"] = Device::result(converted[2], doubles), out["u_float"] = Device::result(converted[3], floats);
  Array host_called = doubles, host_s_double = doubles, host_s_float = floats, host_u_double = doubles,
        host_u_float = floats;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t v = integers.data<int64_t>()[i];
    const double scale = 0.5 * static_cast<double>(i);
    const double c = Frame{{v, 2 * v, -v, 7}, &scale}.pick(i), sd = static_cast<double>(v),
                 ud = static_cast<double>(static_cast<uint64_t>(v));
    const float sf = static_cast<float>(v), uf = static_cast<float>(static_cast<uint64_t>(v));
    std::memcpy(host_called.bytes.data() + 8 * i, &c, 8);
    std::memcpy(host_s_double.bytes.data() + 8 * i, &sd, 8), std::memcpy(host_u_double.bytes.data() + 8 * i, &ud, 8);
    std::memcpy(host_s_float.bytes.data() + 4 * i, &sf, 4), std::memcpy(host_u_float.bytes.data() + 4 * i, &uf, 4);
  }
  out["host_called"] = host_called, out["host_s_double"] = host_s_double, out["host_s_float"] = host_s_float;
  out["host_u_double"] = host_u_double, out["host_u_float"] = host_u_float;

  const Array& reals = need(in, "reals");
  const int64_t m = reals.numel();
  const double* d_reals = device.copy<double>(reals);
  Array integers4{Dtype::i64, {m, 4}, std::vector<unsigned char>(m * 32)};
  auto* from_double = static_cast<int64_t*>(device.allocate(m * 32));
  auto* from_float = static_cast<int64_t*>(device.allocate(m * 32));
  float_to_integer_kernel<<<1, 128>>>(d_reals, m, from_double, from_float);
  check(cudaGetLastError(), "float_to_integer_kernel");
  out["from_double"] = Device::result(from_double, integers4);
  out["from_float"] = Device::result(from_float, integers4);

  const int64_t fused_count = m > 2 ? m - 2 : 0;
  Array fused_like{Dtype::f64, {fused_count}, std::vector<unsigned char>(fused_count * 8)};
  Array fused_float_like{Dtype::f32, {fused_count}, std::vector<unsigned char>(fused_count * 4)};
  auto* fused = static_cast<double*>(device.allocate(fused_count * 8));
  auto* fused_float = static_cast<float*>(device.allocate(fused_count * 4));
  fma_kernel<<<1, 128>>>(d_reals, m, fused, fused_float);
  check(cudaGetLastError(), "fma_kernel");
  out["fused"] = Device::result(fused, fused_like), out["fused_float"] = Device::result(fused_float, fused_float_like);
  Array host_fused = fused_like, host_fused_float = fused_float_like;
  for (int64_t i = 0; i < fused_count; ++i) {
    const double* r = reals.data<double>() + i;
    const double h = std::fma(r[0], r[1], r[2]);
    const float hf = std::fmaf(static_cast<float>(r[0]), static_cast<float>(r[1]), static_cast<float>(r[2]));
    std::memcpy(host_fused.bytes.data() + 8 * i, &h, 8), std::memcpy(host_fused_float.bytes.data() + 4 * i, &hf, 4);
  }
  out["host_fused"] = host_fused, out["host_fused_float"] = host_fused_float;

  Array masks_like{Dtype::i32, {32, 5}, std::vector<unsigned char>(32 * 5 * 4)};
  Array scanned_like{Dtype::i64, {32}, std::vector<unsigned char>(32 * 8)};
  auto* masks = static_cast<uint32_t*>(device.allocate(32 * 5 * 4));
  auto* scanned = static_cast<uint64_t*>(device.allocate(32 * 8));
  warp_kernel<<<1, 32>>>(masks, scanned);
  check(cudaGetLastError(), "warp_kernel");
  out["lane_masks"] = Device::result(masks, masks_like), out["warp_scan"] = Device::result(scanned, scanned_like);
  return out;
}

}  // namespace sim
