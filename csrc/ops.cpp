// Every pysample op, declared once. Kernels register per device beside their code (csrc/cpu, csrc/cuda), autograd
// in csrc/autograd.cpp; fake (meta) implementations live in pysample/ops.py.
#include <Python.h>
#include <torch/library.h>

#include "pysample/stages.h"

TORCH_LIBRARY(pysample, m) {
  // The warper stages (pysample/stages.h: temperature -> top-k -> top-p -> min-p -> typical -> epsilon -> eta) on
  // logits (batch, vocab), in place, in transformers' order and with its semantics. Each parameter is a scalar, a
  // per-row tensor `*_rows` (batch,) or absent (stage skipped). Removed tokens are set to filter_value.
  m.def("warp_logits_(Tensor(a!) logits, " PYSAMPLE_WARP_SCHEMA ") -> ()");
  // Out-of-place form of warp_logits_: returns the warped logits, the input untouched.
  m.def("warp_logits(Tensor logits, " PYSAMPLE_WARP_SCHEMA ") -> Tensor");
  // One token per draw and row, (batch, n) int64, from logits (batch, vocab): temperature (0: greedy) -> top-k ->
  // top-p -> min-p, then a draw from the kept tokens' softmax with per-row seed and step (int64 (batch,) tensors)
  // through Philox4x32-10. Rules in csrc/include/pysample/sample.h; -1 for a row whose softmax is undefined.
  m.def(
      "sample(Tensor logits, Tensor? temperature_rows, float? temperature, Tensor? top_k_rows, int? top_k, "
      "Tensor? top_p_rows, float? top_p, Tensor? min_p_rows, float? min_p, Tensor seed, Tensor step, int n) "
      "-> Tensor");
  // Penalties on scores (batch, vocab) in place from each row's token ids (batch or a divisor of it, length),
  // int32 or int64: repetition (transformers' rule, once per distinct token), then frequency and presence
  // (OpenAI's), each a scalar, a per-row float32 tensor or absent. Positions before history_start are ignored;
  // presence and frequency count positions from output_start on. Ids outside [0, vocab) are ignored.
  m.def(
      "apply_penalties_(Tensor(a!) scores, Tensor ids, Tensor? repetition_rows, float? repetition, "
      "Tensor? presence_rows, float? presence, Tensor? frequency_rows, float? frequency, "
      "Tensor? history_start_rows, int history_start, Tensor? output_start_rows, int output_start) -> ()");
  // Out-of-place form of apply_penalties_.
  m.def(
      "apply_penalties(Tensor scores, Tensor ids, Tensor? repetition_rows, float? repetition, "
      "Tensor? presence_rows, float? presence, Tensor? frequency_rows, float? frequency, "
      "Tensor? history_start_rows, int history_start, Tensor? output_start_rows, int output_start) -> Tensor");
  // Adds each row of ids (batch, length) to the int32 counts table (slots, vocab) at its slot (slots: int64
  // (batch,), or row r -> slot r), with the history scope of apply_penalties_ (entries: pysample/penalty.h), and
  // sets the token's bit in `seen`, int32 words (slots, ceil(vocab / 32)): token t is bit t % 32 of word t / 32.
  m.def(
      "count_tokens_(Tensor(a!) counts, Tensor(b!) seen, Tensor ids, Tensor? slots, Tensor? history_start_rows, "
      "int history_start, Tensor? output_start_rows, int output_start) -> ()");
  // apply_penalties_ from the tables count_tokens_ keeps across steps instead of the ids, at most one pass over each
  // row. `seen` must have its bits set exactly where `counts` is non-zero, as count_tokens_ keeps them: a row with the
  // repetition penalty alone reads only `seen` (1/32 of the bytes), and the CPU visits only the seen tokens of a row
  // that has few.
  m.def(
      "apply_penalty_counts_(Tensor(a!) scores, Tensor counts, Tensor seen, Tensor? slots, Tensor? repetition_rows, "
      "float? repetition, Tensor? presence_rows, float? presence, Tensor? frequency_rows, float? frequency) -> ()");
  // Sets to -inf, in place, every token that would complete an n-gram: where the last n - 1 ids of a row (of its
  // first lengths[r]) followed by the token occur as n consecutive ids of its source: the row's own ids, or row
  // r / (batch / sources' batch) of `sources` (the encoder's ids; source_lengths likewise). n per row: a scalar or
  // an int64 (batch,) tensor; 0 bans nothing. Rules in pysample/ngram.h.
  m.def(
      "no_repeat_ngram_(Tensor(a!) scores, Tensor ids, Tensor? lengths, Tensor? sources, Tensor? source_lengths, "
      "Tensor? ngram_size_rows, int ngram_size) -> ()");
  // no_repeat_ngram_ on a new tensor (contiguous), the scores copied and banned in one pass over each row.
  m.def(
      "no_repeat_ngram(Tensor scores, Tensor ids, Tensor? lengths, Tensor? sources, Tensor? source_lengths, "
      "Tensor? ngram_size_rows, int ngram_size) -> Tensor");
  // Adds, in place, the bias of every sequence whose all-but-last tokens end a row's ids (of its first lengths[r])
  // to its last token's score; sequences packed as int64 tokens, int64 offsets (sequences + 1) and float32 biases.
  // Biases with one last token add up in the given order, in the scores' dtype, and the sum is added once.
  m.def(
      "bias_sequences_(Tensor(a!) scores, Tensor ids, Tensor? lengths, Tensor sequence_tokens, "
      "Tensor sequence_offsets, Tensor sequence_biases) -> ()");
  // Sets to -inf, in place, the tokens [0, vocab_size) of logits (batch, vocab) whose bit is cleared in the row's
  // int32 words of `bitmask` (batch, >= ceil(vocab_size / 32)): token t is bit t % 32 of word t / 32 (xgrammar's
  // layout). Only the rows listed in `indices` (int64 or int32), else all; vocab_size: min(vocab, 32 * words).
  m.def("apply_token_bitmask_(Tensor(a!) logits, Tensor bitmask, Tensor? indices, int? vocab_size) -> ()");
  // Per row of logits (batch, vocab): log_softmax(logits.float()) of each of `tokens` (batch, n) int64 (-1: none,
  // NaN), its rank (the tokens whose logit is >= its own; 0 for none) and the num_top (<= 20) largest logits' ids,
  // descending, ties by ascending id, with their log-probabilities. No (batch, vocab) temporary.
  m.def(
      "token_logprobs(Tensor logits, Tensor tokens, int num_top) "
      "-> (Tensor token_logprobs, Tensor ranks, Tensor top_ids, Tensor top_logprobs)");
  // Reorders the rows (dim 0: batch * beams) of every tensor of `caches` in place, in one call: row i becomes old row
  // beam_idx[i] (int64 or int32). Rows with beam_idx[i] == i are not touched; with filled_length, only positions
  // [0, filled_length) of dim 2 (the sequence) move. Plan in pysample/reorder.h.
  m.def("reorder_kv_cache_(Tensor(a!)[] caches, Tensor beam_idx, int? filled_length) -> ()");
  // One beam search step: for logits (batch * num_beams, vocab) and running beam scores (batch * num_beams,) float32,
  // the best num_candidates of each batch item's num_beams * vocab continuations by log_softmax(logits) + beam score
  // (with log_softmax false, logits + beam score), best first: (scores float32, tokens int64, source beams int64),
  // each (batch, num_candidates). Equal scores in (beam, token) order. Rules in pysample/beam.h.
  m.def(
      "beam_search_step(Tensor logits, Tensor beam_scores, int num_beams, int num_candidates, bool log_softmax) "
      "-> (Tensor, Tensor, Tensor)");
}

// `import pysample._C` runs the registrations above; the module itself has no Python functions.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
