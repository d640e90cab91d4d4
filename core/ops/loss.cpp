// Cross-entropy over logits with label smoothing and ignore_index (fused log-softmax + NLL).
#include "core/ops/loss.h"

#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/op_utils.h"
#include "core/ops/reduce.h"

namespace px {

// loss_n = lse_n - (1 - eps) x_{n,t} - eps/C sum_c x_{n,c}; dL/dx_{n,c} = g_n (softmax_{n,c} - q_{n,c})
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing,
                     Reduction reduction) {
  detail::check_defined(logits, "cross_entropy", "logits");
  detail::check_defined(target, "cross_entropy", "target");
  detail::check_floating(logits, "cross_entropy");
  CHECK_EQ(logits.dim(), 2) << "cross_entropy: logits must be (N, C), got " << logits.str();
  CHECK(target.dim() == 1 && target.size(0) == logits.size(0))
      << "cross_entropy: target " << target.str() << " for logits " << logits.str();
  CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0) << "label_smoothing " << label_smoothing;
  const int64_t n = logits.size(0);
  const Tensor tgt = detail::checked_indices(target, logits.size(1), "cross_entropy", &ignore_index);
  const Tensor x = detail::contiguous_raw(logits);
  const DType stat = logits.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor loss = Tensor::empty({n}, logits.dtype(), logits.device());
  Tensor lse = Tensor::empty({n}, stat, logits.device());
  if (n > 0) detail::backend_of(x).cross_entropy(x, tgt, ignore_index, label_smoothing, loss, lse);
  if (autograd::any_requires_grad({&logits})) {
    autograd::attach(loss, "CrossEntropyBackward", {logits},
                     [sx = autograd::SavedTensor(x), tgt, lse, ignore_index, label_smoothing](const Tensor& g) {
                       const Tensor x = sx.unpack("CrossEntropyBackward");
                       Tensor gx = detail::empty_like(x);
                       if (x.numel() > 0)
                         detail::backend_of(g).cross_entropy_backward(x, tgt, lse, detail::contiguous_raw(g),
                                                                      ignore_index, label_smoothing, gx);
                       return std::vector<Tensor>{gx};
                     });
  }
  return reduce_loss(loss, eq(tgt, scalar_tensor(static_cast<double>(ignore_index), DType::i64, tgt.device())),
                     reduction);
}

// none: loss; sum: sum_n loss_n; mean: sum_n loss_n / #{n : not ignored_n}
Tensor reduce_loss(const Tensor& loss, const Tensor& ignored, Reduction reduction) {
  switch (reduction) {
    case Reduction::none:
      return loss;
    case Reduction::sum:
      return sum(loss);
    case Reduction::mean: {
      // On the loss's device, with no read-back to the host: the sum and the count in f32 (f64 for f64 losses;
      // counts are exact below 2^24), one rounding to a 16-bit loss dtype at the end.
      const DType acc = loss.dtype() == DType::f64 ? DType::f64 : DType::f32;
      const Tensor total = sum(loss.dtype() == acc ? loss : to_dtype(loss, acc));
      const Tensor count = sub(scalar_tensor(static_cast<double>(loss.numel()), acc, loss.device()),
                               sum(to_dtype(ignored, acc)));
      const Tensor mean = div(total, count);
      return loss.dtype() == acc ? mean : to_dtype(mean, loss.dtype());
    }
  }
  return loss;
}

}  // namespace px
