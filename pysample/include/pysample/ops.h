// pysample's ops for C++ callers (a serving engine on libtorch): typed wrappers around `torch.ops.pysample`, so
// that nobody writes a dispatcher signature by hand. Header-only; installed with the Python package, in the folder
//   python -c "import pysample, os; print(os.path.join(os.path.dirname(pysample.__file__), 'include'))"
// Load the compiled library once (pysample::load_library), then call pysample::ops::NAME(...) as any aten op.
// examples/cpp/sample_from_cpp.cpp shows the build command and a call of every op.
//
// Each wrapper takes its op's arguments in the schema's order (csrc/ops.cpp): `Tensor?` is a
// std::optional<at::Tensor>, `float?` a std::optional<double>, `int?` a std::optional<int64_t>. A tuning parameter
// is a per-row tensor `*_rows` (batch,) or a scalar, the other std::nullopt; both std::nullopt: the stage is off.
// The semantics are those of the Python function of the same name (its docstring: `help(pysample.NAME)`), without
// its conveniences: per-row tensors must already have the dtype the op stores (float32 for float parameters, int64
// for int ones) and be contiguous, seed and step are int64 (batch,) tensors, and sample returns (batch, n).
//
// A wrapper's own type is its op's C++ signature, as the kernels declare it (decltype(wrapper) is what it looks its
// op up with, so the two cannot drift apart): the dispatcher checks it at the first call and throws c10::Error on a
// mismatch. A tensor an op writes (`Tensor(a!)`) is taken by value, a handle that shares the caller's storage.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

namespace pysample {

// Loads pysample's compiled library (pysample/_C*.so: `python -c "import pysample._C as c; print(c.__file__)"`),
// which registers the ops; once per process, before the first call. Throws std::runtime_error with dlerror().
// RTLD_LAZY rather than RTLD_NOW: the library's one Python function (the module's init, never called from C++)
// stays unresolved, so no libpython is needed.
inline void load_library(const char* path) {
  if (dlopen(path, RTLD_LAZY | RTLD_GLOBAL) == nullptr) {
    const char* error = dlerror();
    throw std::runtime_error(std::string("pysample: cannot load ") + path + ": " + (error ? error : "unknown error"));
  }
}

namespace ops {
namespace detail {

// The op `name` (overload "": every pysample op has one), typed with Signature; looked up once per wrapper.
template <class Signature>
c10::TypedOperatorHandle<Signature> find(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace detail

// Temperature -> top-k -> top-p -> min-p -> typical -> epsilon -> eta on logits (batch, vocab), in place; removed
// tokens set to filter_value. pysample.warp_logits_.
inline void warp_logits_(at::Tensor logits, const std::optional<at::Tensor>& temperature_rows,
                         std::optional<double> temperature, const std::optional<at::Tensor>& top_k_rows,
                         std::optional<int64_t> top_k, const std::optional<at::Tensor>& top_p_rows,
                         std::optional<double> top_p, const std::optional<at::Tensor>& min_p_rows,
                         std::optional<double> min_p, const std::optional<at::Tensor>& typical_p_rows,
                         std::optional<double> typical_p, const std::optional<at::Tensor>& epsilon_rows,
                         std::optional<double> epsilon, const std::optional<at::Tensor>& eta_rows,
                         std::optional<double> eta, int64_t min_tokens_to_keep = 1,
                         double filter_value = -std::numeric_limits<double>::infinity()) {
  static const auto op = detail::find<decltype(warp_logits_)>("pysample::warp_logits_");
  op.call(logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p,
          typical_p_rows, typical_p, epsilon_rows, epsilon, eta_rows, eta, min_tokens_to_keep, filter_value);
}

// Out-of-place warp_logits_: returns the warped logits, `logits` untouched. pysample.warp_logits.
inline at::Tensor warp_logits(const at::Tensor& logits, const std::optional<at::Tensor>& temperature_rows,
                              std::optional<double> temperature, const std::optional<at::Tensor>& top_k_rows,
                              std::optional<int64_t> top_k, const std::optional<at::Tensor>& top_p_rows,
                              std::optional<double> top_p, const std::optional<at::Tensor>& min_p_rows,
                              std::optional<double> min_p, const std::optional<at::Tensor>& typical_p_rows,
                              std::optional<double> typical_p, const std::optional<at::Tensor>& epsilon_rows,
                              std::optional<double> epsilon, const std::optional<at::Tensor>& eta_rows,
                              std::optional<double> eta, int64_t min_tokens_to_keep = 1,
                              double filter_value = -std::numeric_limits<double>::infinity()) {
  static const auto op = detail::find<decltype(warp_logits)>("pysample::warp_logits");
  return op.call(logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p,
                 typical_p_rows, typical_p, epsilon_rows, epsilon, eta_rows, eta, min_tokens_to_keep, filter_value);
}

// n token ids per row, int64 (batch, n), drawn after temperature (0: greedy) -> top-k -> top-p -> min-p, with each
// row's seed and step (int64 (batch,) tensors) as the Philox key and counter. pysample.sample.
inline at::Tensor sample(const at::Tensor& logits, const std::optional<at::Tensor>& temperature_rows,
                         std::optional<double> temperature, const std::optional<at::Tensor>& top_k_rows,
                         std::optional<int64_t> top_k, const std::optional<at::Tensor>& top_p_rows,
                         std::optional<double> top_p, const std::optional<at::Tensor>& min_p_rows,
                         std::optional<double> min_p, const at::Tensor& seed, const at::Tensor& step, int64_t n) {
  static const auto op = detail::find<decltype(sample)>("pysample::sample");
  return op.call(logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p, seed,
                 step, n);
}

// Repetition, frequency and presence penalties on scores (batch, vocab), in place, from each row's token ids
// (batch or a divisor of it, length); positions before history_start ignored, presence and frequency counting
// positions from output_start on. pysample.apply_penalties_.
inline void apply_penalties_(at::Tensor scores, const at::Tensor& ids, const std::optional<at::Tensor>& repetition_rows,
                             std::optional<double> repetition, const std::optional<at::Tensor>& presence_rows,
                             std::optional<double> presence, const std::optional<at::Tensor>& frequency_rows,
                             std::optional<double> frequency, const std::optional<at::Tensor>& history_start_rows,
                             int64_t history_start, const std::optional<at::Tensor>& output_start_rows,
                             int64_t output_start) {
  static const auto op = detail::find<decltype(apply_penalties_)>("pysample::apply_penalties_");
  op.call(scores, ids, repetition_rows, repetition, presence_rows, presence, frequency_rows, frequency,
          history_start_rows, history_start, output_start_rows, output_start);
}

// Out-of-place apply_penalties_: returns the penalised scores, `scores` untouched. pysample.apply_penalties.
inline at::Tensor apply_penalties(const at::Tensor& scores, const at::Tensor& ids,
                                  const std::optional<at::Tensor>& repetition_rows, std::optional<double> repetition,
                                  const std::optional<at::Tensor>& presence_rows, std::optional<double> presence,
                                  const std::optional<at::Tensor>& frequency_rows, std::optional<double> frequency,
                                  const std::optional<at::Tensor>& history_start_rows, int64_t history_start,
                                  const std::optional<at::Tensor>& output_start_rows, int64_t output_start) {
  static const auto op = detail::find<decltype(apply_penalties)>("pysample::apply_penalties");
  return op.call(scores, ids, repetition_rows, repetition, presence_rows, presence, frequency_rows, frequency,
                 history_start_rows, history_start, output_start_rows, output_start);
}

// Adds each row of ids (batch, length) to the int32 counts table (slots, vocab) at its slot (int64 (batch,), or
// std::nullopt: row r -> slot r) and sets its bits in `seen`, int32 (slots, ceil(vocab / 32)); in place.
// pysample.PenaltyState (reset / append).
inline void count_tokens_(at::Tensor counts, at::Tensor seen, const at::Tensor& ids,
                          const std::optional<at::Tensor>& slots, const std::optional<at::Tensor>& history_start_rows,
                          int64_t history_start, const std::optional<at::Tensor>& output_start_rows,
                          int64_t output_start) {
  static const auto op = detail::find<decltype(count_tokens_)>("pysample::count_tokens_");
  op.call(counts, seen, ids, slots, history_start_rows, history_start, output_start_rows, output_start);
}

// apply_penalties_ from the tables count_tokens_ keeps across steps instead of the ids, in place.
// pysample.PenaltyState.apply_.
inline void apply_penalty_counts_(at::Tensor scores, const at::Tensor& counts, const at::Tensor& seen,
                                  const std::optional<at::Tensor>& slots,
                                  const std::optional<at::Tensor>& repetition_rows, std::optional<double> repetition,
                                  const std::optional<at::Tensor>& presence_rows, std::optional<double> presence,
                                  const std::optional<at::Tensor>& frequency_rows, std::optional<double> frequency) {
  static const auto op = detail::find<decltype(apply_penalty_counts_)>("pysample::apply_penalty_counts_");
  op.call(scores, counts, seen, slots, repetition_rows, repetition, presence_rows, presence, frequency_rows, frequency);
}

// Sets to -inf, in place, every token that would complete an n-gram of the row's ids (or of its row of `sources`,
// the encoder's ids); n per row: ngram_size_rows (int64 (batch,)) or ngram_size, 0 bans nothing.
// pysample.no_repeat_ngram_.
inline void no_repeat_ngram_(at::Tensor scores, const at::Tensor& ids, const std::optional<at::Tensor>& lengths,
                             const std::optional<at::Tensor>& sources, const std::optional<at::Tensor>& source_lengths,
                             const std::optional<at::Tensor>& ngram_size_rows, int64_t ngram_size) {
  static const auto op = detail::find<decltype(no_repeat_ngram_)>("pysample::no_repeat_ngram_");
  op.call(scores, ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size);
}

// no_repeat_ngram_ on a new (contiguous) tensor, `scores` untouched. pysample.no_repeat_ngram.
inline at::Tensor no_repeat_ngram(const at::Tensor& scores, const at::Tensor& ids,
                                  const std::optional<at::Tensor>& lengths, const std::optional<at::Tensor>& sources,
                                  const std::optional<at::Tensor>& source_lengths,
                                  const std::optional<at::Tensor>& ngram_size_rows, int64_t ngram_size) {
  static const auto op = detail::find<decltype(no_repeat_ngram)>("pysample::no_repeat_ngram");
  return op.call(scores, ids, lengths, sources, source_lengths, ngram_size_rows, ngram_size);
}

// Adds, in place, each sequence's bias to its last token's score where its other tokens end the row's ids; the
// sequences packed as int64 tokens, int64 offsets (sequences + 1) and float32 biases (pysample.ops.pack_sequences).
// pysample.bias_sequences_.
inline void bias_sequences_(at::Tensor scores, const at::Tensor& ids, const std::optional<at::Tensor>& lengths,
                            const at::Tensor& sequence_tokens, const at::Tensor& sequence_offsets,
                            const at::Tensor& sequence_biases) {
  static const auto op = detail::find<decltype(bias_sequences_)>("pysample::bias_sequences_");
  op.call(scores, ids, lengths, sequence_tokens, sequence_offsets, sequence_biases);
}

// Sets to -inf, in place, the tokens [0, vocab_size) of logits (batch, vocab) whose bit is cleared in the row's int32
// words of `bitmask` (batch, >= ceil(vocab_size / 32)): token t is bit t % 32 of word t / 32 (xgrammar's layout).
// Only the rows listed in `indices` (int64 or int32), or every row; vocab_size std::nullopt: min(vocab, 32 * words).
// pysample.apply_token_bitmask_.
inline void apply_token_bitmask_(at::Tensor logits, const at::Tensor& bitmask,
                                 const std::optional<at::Tensor>& indices = std::nullopt,
                                 std::optional<int64_t> vocab_size = std::nullopt) {
  static const auto op = detail::find<decltype(apply_token_bitmask_)>("pysample::apply_token_bitmask_");
  op.call(logits, bitmask, indices, vocab_size);
}

// Reorders the rows (dim 0) of every tensor of `caches` in place, in one call: row i becomes old row beam_idx[i];
// with filled_length, only positions [0, filled_length) of dim 2 move. pysample.reorder_kv_cache_.
inline void reorder_kv_cache_(at::TensorList caches, const at::Tensor& beam_idx,
                              std::optional<int64_t> filled_length = std::nullopt) {
  static const auto op = detail::find<decltype(reorder_kv_cache_)>("pysample::reorder_kv_cache_");
  op.call(caches, beam_idx, filled_length);
}

// Per row of logits (batch, vocab): log_softmax(logits.float()) of each of `tokens` (batch, n) int64 (-1: none, NaN),
// its rank (the tokens whose logit is >= its own; 0 for none), and the num_top (<= 20) largest logits' ids, descending,
// ties by ascending id, with their log-probabilities: (token_logprobs, ranks, top_ids, top_logprobs).
// pysample.token_logprobs.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> token_logprobs(const at::Tensor& logits,
                                                                                 const at::Tensor& tokens,
                                                                                 int64_t num_top = 0) {
  static const auto op = detail::find<decltype(token_logprobs)>("pysample::token_logprobs");
  return op.call(logits, tokens, num_top);
}

// One beam search step: the best num_candidates continuations of each batch item, best first, as (scores float32,
// tokens int64, source beams int64), each (batch, num_candidates); beam_scores float32 (batch * num_beams,).
// pysample.beam_search_step.
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> beam_search_step(const at::Tensor& logits,
                                                                       const at::Tensor& beam_scores, int64_t num_beams,
                                                                       int64_t num_candidates,
                                                                       bool log_softmax = true) {
  static const auto op = detail::find<decltype(beam_search_step)>("pysample::beam_search_step");
  return op.call(logits, beam_scores, num_beams, num_candidates, log_softmax);
}

}  // namespace ops
}  // namespace pysample
