// Autograd for pysample's ops, registered from one place: the in-place ops behave as torch's own in-place ops, the
// out-of-place warper, penalties and n-gram ban have transformers' gradients, the selections raise at backward.
#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <vector>

namespace pysample {
namespace {

// Calls visit(tensor) for every tensor the op writes: the arguments whose schema says Tensor(a!) or Tensor(a!)[].
template <typename Visit>
void for_each_written(const c10::OperatorHandle& op, const torch::jit::Stack& stack, Visit visit) {
  const auto& arguments = op.schema().arguments();
  const size_t first = stack.size() - arguments.size();
  for (size_t i = 0; i < arguments.size(); ++i) {
    const c10::AliasInfo* alias = arguments[i].alias_info();
    const c10::IValue& value = stack[first + i];
    if (alias == nullptr || !alias->isWrite()) continue;
    if (value.isTensor()) visit(value.toTensor());
    if (value.isTensorList()) {
      for (const at::Tensor& t : value.toTensorList().vec()) visit(t);
    }
  }
}

// In-place ops as torch's own: the version counter of every written tensor is bumped (autograd then refuses a
// saved tensor that changed), which also refuses an inference tensor outside inference mode.
void bump_written_versions(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  for_each_written(op, *stack, [](const at::Tensor& t) { torch::autograd::impl::bump_version(t); });
  at::AutoDispatchBelowADInplaceOrView guard;
  op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
}

// The in-place ops have no gradient: writing to a tensor that requires grad is refused while grad mode is on, with
// torch's message for a leaf (pysample's Python functions route such tensors through the differentiable
// out-of-place ops).
void refuse_written_requiring_grad(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  if (c10::GradMode::is_enabled()) {
    for_each_written(op, *stack, [&](const at::Tensor& t) {
      TORCH_CHECK(!(t.requires_grad() && t.is_leaf()),
                  "a leaf Variable that requires grad is being used in an in-place operation.");
      TORCH_CHECK(!t.requires_grad(), op.schema().name(),
                  " writes to a tensor that requires grad and has no gradient in place: use its out-of-place "
                  "form, or run it under torch.no_grad()");
    });
  }
  at::AutoDispatchBelowAutograd guard;
  op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
}

// ---- gradients of the out-of-place ops --------------------------------------------------------------------------
// Those of transformers' processors, whose outputs are masked_fill, division and gather / scatter of the scores: a
// removed or banned token gets no gradient, a kept one the gradient divided by the temperature, a token of the
// repetition penalty the penalty's factor (once per distinct token, as the penalty itself), presence and frequency
// (constants added) pass it unchanged. Which tokens the op removed, banned or penalised is asked of the op itself
// in backward, on the same arguments, so that each rule stays written once.

using Arguments = std::vector<c10::IValue>;

c10::IValue& argument(const c10::OperatorHandle& op, Arguments& args, const char* name) {
  return args[*op.schema().argumentIndexWithName(name)];
}

at::Tensor first_output(const c10::OperatorHandle& op, const Arguments& args) {
  torch::jit::Stack stack(args.begin(), args.end());
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

constexpr double kInf = std::numeric_limits<double>::infinity();

at::Tensor warp_logits_backward(const c10::OperatorHandle& op, Arguments args, const at::Tensor& grad) {
  // Removed tokens are the ones set to the filter value whatever it is (a kept token keeps its value).
  argument(op, args, "filter_value") = -kInf;
  const at::Tensor low = first_output(op, args);
  argument(op, args, "filter_value") = kInf;
  const at::Tensor high = first_output(op, args);
  const at::Tensor kept_grad = grad.masked_fill(low.eq(-kInf).logical_and(high.eq(kInf)), 0);
  const c10::IValue& rows = argument(op, args, "temperature_rows");
  const c10::IValue& value = argument(op, args, "temperature");
  if (rows.isTensor()) return kept_grad / rows.toTensor().to(grad.scalar_type()).unsqueeze(1);
  return value.isNone() ? kept_grad : kept_grad / value.toDouble();
}

at::Tensor apply_penalties_backward(const c10::OperatorHandle& op, Arguments args, const at::Tensor& grad) {
  const c10::IValue rows = argument(op, args, "repetition_rows"), value = argument(op, args, "repetition");
  if (rows.isNone() && value.isNone()) return grad;
  const at::Tensor scores = argument(op, args, "scores").toTensor();
  // A probe of ones through the repetition penalty alone: the penalised tokens are the ones it changes.
  argument(op, args, "scores") = at::ones(scores.sizes(), scores.options().dtype(at::kFloat));
  argument(op, args, "repetition_rows") = c10::IValue();
  argument(op, args, "repetition") = 2.0;
  for (const char* name : {"presence_rows", "presence", "frequency_rows", "frequency"}) {
    argument(op, args, name) = c10::IValue();
  }
  const at::Tensor penalised = first_output(op, args).ne(1);
  at::Tensor multiplied, divided;  // transformers: s < 0 ? s * p : s / p
  if (rows.isTensor()) {
    const at::Tensor factor = rows.toTensor().to(grad.scalar_type()).unsqueeze(1);
    multiplied = grad * factor, divided = grad / factor;
  } else {
    multiplied = grad * value.toDouble(), divided = grad / value.toDouble();
  }
  return at::where(penalised, at::where(scores.lt(0), multiplied, divided), grad);
}

at::Tensor no_repeat_ngram_backward(const c10::OperatorHandle& op, Arguments args, const at::Tensor& grad) {
  argument(op, args, "scores") = at::zeros(grad.sizes(), grad.options().dtype(at::kFloat));
  return grad.masked_fill(first_output(op, args).eq(-kInf), 0);
}

struct Gradient {
  const char* op;
  at::Tensor (*backward)(const c10::OperatorHandle& op, Arguments args, const at::Tensor& grad);
  bool reads_scores;  // else the scores are not kept for backward (the caller may change them in place)
};

constexpr Gradient kGradients[] = {
    {"warp_logits", &warp_logits_backward, true},
    {"apply_penalties", &apply_penalties_backward, true},
    {"no_repeat_ngram", &no_repeat_ngram_backward, false},
};

// The gradient of the op named `op` in the schema ("pysample::warp_logits").
const Gradient& gradient_of(const std::string& op) {
  for (const Gradient& g : kGradients) {
    if (op == std::string("pysample::") + g.op) return g;
  }
  TORCH_CHECK(false, "no gradient for ", op);
}

// The op as a node of the autograd graph: its arguments are kept (tensors as saved variables, whose version autograd
// checks) for its backward.
struct OpWithGradient : torch::autograd::Function<OpWithGradient> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& scores, const std::string& name,
                            Arguments args) {
    const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), "");
    const at::Tensor out = first_output(op, args);
    if (!gradient_of(name).reads_scores) args[0] = c10::IValue();
    std::vector<at::Tensor> tensors;
    c10::List<int64_t> positions;
    c10::impl::GenericList rest(c10::AnyType::get());
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i].isTensor()) positions.push_back(static_cast<int64_t>(i)), tensors.push_back(args[i].toTensor());
      rest.push_back(args[i].isTensor() ? c10::IValue() : args[i]);
    }
    ctx->save_for_backward(tensors);
    ctx->saved_data["name"] = name;
    ctx->saved_data["positions"] = positions;
    ctx->saved_data["rest"] = rest;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const std::string name = ctx->saved_data["name"].toStringRef();
    const c10::OperatorHandle op = c10::Dispatcher::singleton().findSchemaOrThrow(name.c_str(), "");
    Arguments args = ctx->saved_data["rest"].toList().vec();
    const std::vector<at::Tensor> tensors = ctx->get_saved_variables();
    const c10::List<int64_t> positions = ctx->saved_data["positions"].toIntList();
    for (size_t i = 0; i < tensors.size(); ++i) args[positions[i]] = tensors[i];
    return {gradient_of(name).backward(op, std::move(args), grads[0]), at::Tensor(), at::Tensor()};
  }
};

// Autograd of an op whose first argument is the scores: a plain redispatch unless they require grad.
void differentiable(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const size_t count = op.schema().arguments().size();
  const at::Tensor& scores = (*stack)[stack->size() - count].toTensor();
  if (!(c10::GradMode::is_enabled() && scores.requires_grad())) {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
    return;
  }
  Arguments args(stack->end() - count, stack->end());
  torch::jit::drop(*stack, count);
  torch::jit::push(*stack, OpWithGradient::apply(args[0].toTensor(), op.schema().name(), std::move(args)));
}

constexpr const char* kInPlaceOps[] = {"warp_logits_",          "apply_penalties_", "count_tokens_",
                                       "apply_penalty_counts_", "no_repeat_ngram_", "bias_sequences_",
                                       "apply_token_bitmask_",  "reorder_kv_cache_"};

}  // namespace

TORCH_LIBRARY_IMPL(pysample, ADInplaceOrView, m) {
  for (const char* op : kInPlaceOps) m.impl(op, torch::CppFunction::makeFromBoxedFunction<&bump_written_versions>());
}

// The selections (sample, beam_search_step, token_logprobs) have no gradient: a backward through them raises, never a
// silent None.
TORCH_LIBRARY_IMPL(pysample, Autograd, m) {
  for (const char* op : kInPlaceOps) {
    m.impl(op, torch::CppFunction::makeFromBoxedFunction<&refuse_written_requiring_grad>());
  }
  for (const Gradient& g : kGradients) m.impl(g.op, torch::CppFunction::makeFromBoxedFunction<&differentiable>());
  for (const char* op : {"sample", "beam_search_step", "token_logprobs"}) {
    m.impl(op, torch::autograd::autogradNotImplementedFallback());
  }
}

}  // namespace pysample
