// pysample from C++, without Python: a serving engine built on libtorch loads pysample's compiled library and calls
// its ops through the torch dispatcher, as it calls any aten op. Their schemas are in csrc/ops.cpp.
//
// Build against the libtorch of the Python environment pysample was built in (tests/test_cpp_example.py does this):
//   g++ -std=c++17 sample_from_cpp.cpp -I$TORCH/include -I$TORCH/include/torch/csrc/api/include \
//       -L$TORCH/lib -Wl,-rpath,$TORCH/lib -ltorch -ltorch_cpu -lc10 -ldl -o sample_from_cpp
// Run with the library's path:
//   ./sample_from_cpp $(python -c "import pysample._C as c; print(c.__file__)")
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>

#include <iomanip>
#include <iostream>
#include <optional>
#include <tuple>

namespace {

// pysample::sample (logits, temperature_rows, temperature, top_k_rows, top_k, top_p_rows, top_p, min_p_rows, min_p,
// seed, step, n) -> tokens: a per-row tensor or a scalar for each parameter, as the schema says.
using SampleFn = at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&, std::optional<double>,
                            const std::optional<at::Tensor>&, std::optional<int64_t>, const std::optional<at::Tensor>&,
                            std::optional<double>, const std::optional<at::Tensor>&, std::optional<double>,
                            const at::Tensor&, const at::Tensor&, int64_t);
// pysample::beam_search_step (logits, beam_scores, num_beams, num_candidates, log_softmax) -> (scores, tokens, beams)
using BeamStepFn = std::tuple<at::Tensor, at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                                  int64_t, bool);

void print(const char* name, const at::Tensor& t) {
  std::cout << name;
  const at::Tensor flat = t.flatten().contiguous();
  for (int64_t i = 0; i < flat.numel(); ++i) {
    std::cout << ' ' << std::setprecision(9) << flat[i].item<double>();
  }
  std::cout << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: " << argv[0] << " PATH_TO_PYSAMPLE_C_LIBRARY\n";
    return 2;
  }
  // Loading the library registers its ops (static initialisers). RTLD_LAZY: its one Python function, the module's
  // init, is never called, so no Python is needed.
  if (dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL) == nullptr) {
    std::cerr << "cannot load " << argv[1] << ": " << dlerror() << '\n';
    return 1;
  }
  auto& dispatcher = c10::Dispatcher::singleton();
  const auto sample = dispatcher.findSchemaOrThrow("pysample::sample", "").typed<SampleFn>();
  const auto beam_step = dispatcher.findSchemaOrThrow("pysample::beam_search_step", "").typed<BeamStepFn>();

  at::manual_seed(0);
  const at::Tensor logits = at::randn({4, 32000}) * 3;

  // One token per row (a serving batch of 4 requests): temperature 0.7, top-k 50, top-p 0.9, each request's seed and
  // decoding step as tensors.
  const at::Tensor seeds = at::arange(100, 104, at::kLong);
  const at::Tensor steps = at::full({4}, 5, at::kLong);
  const at::Tensor tokens = sample.call(logits, std::nullopt, 0.7, std::nullopt, 50, std::nullopt, 0.9, std::nullopt,
                                        std::nullopt, seeds, steps, 1);
  print("sample:", tokens);

  // One beam search step over 2 batch items of 2 beams: the best 4 continuations of each.
  const at::Tensor beam_scores = at::tensor({0.0f, -1.5f, -0.25f, -3.0f});
  const auto [scores, next_tokens, beams] = beam_step.call(logits, beam_scores, 2, 4, true);
  print("beam scores:", scores);
  print("beam tokens:", next_tokens);
  print("beam sources:", beams);
  return 0;
}
