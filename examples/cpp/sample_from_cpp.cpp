// pysample from C++, without Python: a serving engine built on libtorch loads pysample's compiled library and calls
// its ops through the typed wrappers of pysample/ops.h, a header installed with the Python package (each wrapper
// looks its op up in the torch dispatcher once and calls it, as at:: calls an aten op). Every op is called below.
//
// Build against the libtorch of the Python environment pysample was installed in (tests/test_cpp_example.py builds
// and runs it, and compares its output with the Python API's):
//   TORCH=$(python -c "import torch, os; print(os.path.dirname(torch.__file__))")
//   PYSAMPLE=$(python -c "import pysample, os; print(os.path.join(os.path.dirname(pysample.__file__), 'include'))")
//   ABI=$(python -c "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))")
//   INCLUDES="-I$PYSAMPLE -I$TORCH/include -I$TORCH/include/torch/csrc/api/include"
//   LIBS="-L$TORCH/lib -Wl,-rpath,$TORCH/lib -ltorch -ltorch_cpu -lc10 -ldl"
//   g++ -std=c++20 -O2 -D_GLIBCXX_USE_CXX11_ABI=$ABI $INCLUDES sample_from_cpp.cpp $LIBS -o sample_from_cpp
// (-std=c++20: torch's headers need it; the ABI flag must be torch's, or std::string arguments do not link.)
// Run with the path of pysample's compiled library:
//   ./sample_from_cpp $(python -c "import pysample._C as c; print(c.__file__)")
#include <ATen/ATen.h>
#include <pysample/ops.h>

#include <exception>
#include <iomanip>
#include <iostream>
#include <optional>
#include <vector>

namespace {

// One line: the name, then the tensor's values in row-major order (9 digits: float32 values exactly).
void print(const char* name, const at::Tensor& t) {
  std::cout << name;
  const at::Tensor flat = t.flatten().contiguous();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    std::cout << ' ' << std::setprecision(9) << flat[i].item<double>();
  }
  std::cout << '\n';
}

// Warped logits, of which a few tokens per row are kept: their (row, token) pairs, then their values.
void print_kept(const char* name, const at::Tensor& warped) {
  const at::Tensor kept = at::isfinite(warped);
  std::cout << name << ' ';
  print("kept:", at::nonzero(kept));
  std::cout << name << ' ';
  print("values:", warped.masked_select(kept));
}

void run() {
  namespace ops = pysample::ops;
  const std::nullopt_t none = std::nullopt;

  at::manual_seed(0);
  const at::Tensor logits = at::randn({4, 32000}) * 3;

  // One token per row (a serving batch of 4 requests): temperature 0.7, top-k 50, top-p 0.9, each request's seed and
  // decoding step as tensors. The op returns (batch, n).
  const at::Tensor seeds = at::arange(100, 104, at::kLong);
  const at::Tensor steps = at::full({4}, 5, at::kLong);
  print("sample:", ops::sample(logits, none, 0.7, none, 50, none, 0.9, none, none, seeds, steps, /*n=*/1));

  // The same warpers without the draw, out of place; then in place, with a top-k per request (an int64 tensor).
  print_kept("warp",
             ops::warp_logits(logits, none, 0.7, none, 50, none, 0.9, none, none, none, none, none, none, none, none));
  const at::Tensor warped = logits.clone();
  const at::Tensor top_k_rows = at::tensor({50, 20, 50, 5}, at::kLong);
  ops::warp_logits_(warped, none, 0.7, top_k_rows, none, none, 0.9, none, none, none, none, none, none, none, none);
  print_kept("warp_", warped);

  // Penalties from each row's history (ids, length 10); presence and frequency count positions from 4 on.
  const at::Tensor scores = logits.slice(1, 0, 64).contiguous();
  const at::Tensor ids = at::arange(40, at::kLong).reshape({4, 10}) * 7 % 64;
  print("penalties:", ops::apply_penalties(scores, ids, none, 2.0, none, 0.5, none, 0.25, none, 0, none, 4));
  // In place, with a repetition penalty per request (float32) and the first 2 positions ignored.
  const at::Tensor penalised = scores.clone();
  const at::Tensor repetition_rows = at::tensor({1.0f, 1.5f, 2.0f, 3.0f});
  ops::apply_penalties_(penalised, ids, repetition_rows, none, none, none, none, 0.25, none, 2, none, 4);
  print("penalties_:", penalised);
  // Across decoding steps: count each request's history once into tables, then penalise from the tables.
  const at::Tensor counts = at::zeros({4, 64}, at::kInt);
  const at::Tensor seen = at::zeros({4, 2}, at::kInt);  // a bit per token: ceil(64 / 32) int32 words
  ops::count_tokens_(counts, seen, ids, none, none, 0, none, 4);
  const at::Tensor from_counts = scores.clone();
  ops::apply_penalty_counts_(from_counts, counts, seen, none, none, 2.0, none, 0.5, none, 0.25);
  print("penalty counts:", from_counts);

  // No repeated 3-grams (out of place), then no repeated 2-grams (in place).
  const at::Tensor history = at::tensor({1, 2, 3, 1, 2, 4, 4, 0, 4, 4}, at::kLong).reshape({2, 5});
  print("ngram:", ops::no_repeat_ngram(at::zeros({2, 8}), history, none, none, none, none, 3));
  const at::Tensor banned = at::zeros({2, 8});
  ops::no_repeat_ngram_(banned, history, none, none, none, none, 2);
  print("ngram_:", banned);

  // Sequence biases: -1 on token 4 always, +5 on token 2 after token 1. Packed as pysample.ops.pack_sequences packs.
  const at::Tensor biased = at::zeros({2, 8});
  ops::bias_sequences_(biased, at::tensor({0, 1, 1, 0}, at::kLong).reshape({2, 2}), none,
                       at::tensor({4, 1, 2}, at::kLong), at::tensor({0, 1, 3}, at::kLong), at::tensor({-1.0f, 5.0f}));
  print("bias:", biased);

  // A grammar's token bitmask (xgrammar's layout: token t allowed where bit t % 32 of int32 word t / 32 is set):
  // row 0 allows tokens 1, 2 and 33 of 40, row 1 all; then row 1 alone of 4, with a mask that allows none of its first
  // 36 tokens.
  const at::Tensor bitmask = at::tensor({0b110, 0b10, -1, -1}, at::kInt).reshape({2, 2});
  const at::Tensor grammar = logits.slice(0, 0, 2).slice(1, 0, 40).clone();
  ops::apply_token_bitmask_(grammar, bitmask);
  print("bitmask:", grammar);
  const at::Tensor one_row = logits.slice(1, 0, 40).clone();
  ops::apply_token_bitmask_(one_row, at::zeros({4, 2}, at::kInt), at::tensor({1}, at::kLong), 36);
  print("bitmask rows:", one_row);

  // The log-probabilities and ranks of the sampled tokens, and each row's 3 most likely tokens with theirs.
  const at::Tensor drawn = ops::sample(logits, none, 0.7, none, 50, none, 0.9, none, none, seeds, steps, /*n=*/2);
  const auto [drawn_logprobs, ranks, top_ids, top_logprobs] = ops::token_logprobs(logits, drawn, 3);
  print("logprobs:", drawn_logprobs);
  print("logprob ranks:", ranks);
  print("top ids:", top_ids);
  print("top logprobs:", top_logprobs);

  // Reorders a KV cache (batch * beams, heads, sequence, head_dim) after a step: row i takes old row beam_idx[i],
  // within the first 2 positions of the sequence.
  const at::Tensor keys = at::arange(24, at::kFloat).reshape({4, 1, 3, 2});
  const at::Tensor values = keys * 10;
  ops::reorder_kv_cache_({keys, values}, at::tensor({1, 0, 0, 3}, at::kLong), 2);
  print("reorder keys:", keys);
  print("reorder values:", values);

  // One beam search step over 2 batch items of 2 beams: the best 4 continuations of each.
  const at::Tensor beam_scores = at::tensor({0.0f, -1.5f, -0.25f, -3.0f});
  const auto [candidate_scores, tokens, beams] = ops::beam_search_step(logits, beam_scores, 2, 4);
  print("beam scores:", candidate_scores);
  print("beam tokens:", tokens);
  print("beam sources:", beams);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " PATH_TO_PYSAMPLE_C_LIBRARY\n";
    return 2;
  }
  try {
    pysample::load_library(argv[1]);  // registers the ops; no Python needed
    run();
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
