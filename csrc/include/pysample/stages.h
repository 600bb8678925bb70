// The warper's stages, shared by the warper and the sampler on both devices: the stage table, from which the op
// schemas, the parameter struct and the checks derive, and each stage's rule. Framework-free (no torch header).
#pragma once

#include "pysample/common.h"

// The stages in the order they run (transformers' order), one row each: X(name, Stored, Value, schema type, range).
// `name` is the op argument and `name##_rows` its per-row tensor, of Stored; the kernels read Value; `range` holds
// the values the ops accept (ValueRange). Adding a stage: a row here, one in pysample/_stages.py, and its kernels.
#define PYSAMPLE_WARP_STAGES(X)                           \
  X(temperature, float, double, "float", kPositiveFinite) \
  X(top_k, int64_t, int64_t, "int", kNonNegative)         \
  X(top_p, float, double, "float", kUnitInterval)         \
  X(min_p, float, double, "float", kUnitInterval)         \
  X(typical_p, float, double, "float", kUnitInterval)     \
  X(epsilon, float, double, "float", kUnitInterval)       \
  X(eta, float, double, "float", kUnitInterval)

// The warper's op arguments after the logits: each stage's per-row tensor and scalar, then the shared ones.
#define PYSAMPLE_STAGE_SCHEMA(name, Stored, Value, schema_type, range) \
  "Tensor? " #name "_rows, " schema_type "? " #name ", "
#define PYSAMPLE_WARP_SCHEMA PYSAMPLE_WARP_STAGES(PYSAMPLE_STAGE_SCHEMA) "int min_tokens_to_keep, float filter_value"

namespace pysample {

// The stages by name, in the table's order: Stage::top_p.
enum class Stage {
#define PYSAMPLE_STAGE_NAME(name, Stored, Value, schema_type, range) name,
  PYSAMPLE_WARP_STAGES(PYSAMPLE_STAGE_NAME)
#undef PYSAMPLE_STAGE_NAME
};

// Every stage's parameter; a stage applies to a row when it is enabled (the Python layer passes a warper's
// "disabled" value, top_k = 0 and the like, as absent).
struct WarpParams {
#define PYSAMPLE_STAGE_FIELD(name, Stored, Value, schema_type, range) RowParam<Stored, Value> name;
  PYSAMPLE_WARP_STAGES(PYSAMPLE_STAGE_FIELD)
#undef PYSAMPLE_STAGE_FIELD
  int64_t min_tokens_to_keep = 1;
  float filter_value = -std::numeric_limits<float>::infinity();
};

// Temperature as transformers applies it: `scores / temperature` in float, rounded to the logits' dtype.
template <typename scalar_t>
PYSAMPLE_HD float apply_temperature(float logit, float temperature) {
  return static_cast<float>(static_cast<scalar_t>(logit / temperature));
}

// transformers' top-p removes a token when the probability mass at or below it (ascending order) is <= 1 - top_p,
// the threshold computed in double and compared in float. Seen from the top, a token is kept while the mass of
// the tokens above it is below `keep_mass = 1 - float(1 - top_p)` (times the softmax normaliser).
PYSAMPLE_HD double top_p_keep_mass(double top_p) { return 1.0 - static_cast<double>(static_cast<float>(1.0 - top_p)); }

// The float probabilities transformers compares in min-p, epsilon and eta: softmax = exp(x - max) * (1 / sum).
PYSAMPLE_HD float probability(float exp_shifted, float inv_sum) { return exp_shifted * inv_sum; }

// transformers computes softmax in the logits' dtype, where a probability at or below half the dtype's smallest
// subnormal rounds to 0; top-p with top_p = 1 removes exactly the tokens whose probability is 0. (float32: 0.)
constexpr float kFloat16ZeroProbability = 2.98023224e-8f;    // 2^-25
constexpr float kBFloat16ZeroProbability = 4.59177481e-41f;  // 2^-134

// The entropy -sum p log p of a softmax from sum = sum exp(x - max) and moment = sum exp(x - max) * (x - max):
// log p = (x - max) - log(sum), so the entropy is log(sum) - moment / sum.
PYSAMPLE_HD double entropy_from_moments(double sum, double moment) { return log(sum) - moment / sum; }

// eta-sampling's cut-off: min(epsilon, sqrt(epsilon) * exp(-entropy)), in float like transformers.
PYSAMPLE_HD float eta_cutoff(double epsilon, double entropy) {
  const float eps = static_cast<float>(epsilon);
  const float dynamic = sqrtf(eps) * expf(static_cast<float>(-entropy));
  return dynamic < eps ? dynamic : eps;
}

// typical_p = 1 keeps every token, as transformers (whose warper rejects a mass >= 1: generate() adds none) would:
// the mass of a rounded softmax may reach 1 before its last tokens. A NaN also skips the stage (CUDA cannot raise).
PYSAMPLE_HD bool typical_keeps_all(double typical_p) { return !(typical_p < 1.0); }

// Typical decoding's distance of a token from the entropy: |-(log p) - entropy| with log p = x - max - log(sum).
PYSAMPLE_HD float typical_distance(float x, float max, float log_sum, float entropy) {
  return fabsf(-((x - max) - log_sum) - entropy);
}

// ---- Per-row parameters on the GPU, where a value the CPU rejects cannot raise (that needs a host sync) ----------

// A temperature that is not a finite number > 0 is taken as 1.
PYSAMPLE_HD double usable_temperature(double temperature) {
  return in_range(ValueRange::kPositiveFinite, temperature) ? temperature : 1.0;
}

// top_p, min_p, typical_p, epsilon and eta are clamped to [0, 1] (a NaN stays NaN: the kernel skips the stage).
PYSAMPLE_HD double clamp_unit(double value) { return value < 0 ? 0.0 : (value > 1 ? 1.0 : value); }

}  // namespace pysample
