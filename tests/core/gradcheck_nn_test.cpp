// Finite-difference gradient checks of the network ops: softmax, log_softmax, layer_norm,
// embedding, dropout and cross_entropy, plus an attention block composed from them.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/ops/ops.h"
#include "core/util/error.h"
#include "tests/common/gradcheck.h"

namespace px::test {
namespace {

using Inputs = std::vector<Tensor>;

TEST(GradcheckSoftmax, SoftmaxAndLogSoftmax) {
  auto sm = [](const Inputs& v) { return softmax(v[0]); };
  auto lsm = [](const Inputs& v) { return log_softmax(v[0]); };
  for (const Tensor& x : {uniform64({3, 5}, 1, -3, 3), uniform64({2, 3, 4}, 2, -3, 3), transposed64({4, 5}, 3, -3, 3),
                          narrowed64({3, 4}, 1, 4), expanded64({3, 4}, 0, 5), uniform64({6}, 6)}) {
    EXPECT_TRUE(gradcheck(sm, {x})) << x.str();
    EXPECT_TRUE(gradcheck(lsm, {x})) << x.str();
  }
  // Large logits: the max-subtraction keeps it finite and the gradient right.
  EXPECT_TRUE(gradcheck(lsm, {uniform64({2, 4}, 7, 40, 45)}));
}

TEST(GradcheckLayerNorm, WithAndWithoutAffine) {
  const Tensor x = uniform64({2, 3, 6}, 10, -2, 2);
  const Tensor w = uniform64({6}, 11, 0.5, 1.5), b = uniform64({6}, 12);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); }, {x, w, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], Tensor(), Tensor()); }, {x}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], Tensor()); }, {x, w}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], Tensor(), v[1]); }, {x, b}));
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return layer_norm(v[0], v[1], v[2], 0.1); }, {x, w, b}));
}

TEST(GradcheckLayerNorm, StridedInputs) {
  auto ln = [](const Inputs& v) { return layer_norm(v[0], v[1], v[2]); };
  EXPECT_TRUE(gradcheck(ln, {transposed64({4, 5}, 13, -2, 2), narrowed64({5}, 0, 14), uniform64({5}, 15)}));
  EXPECT_TRUE(gradcheck(ln, {expanded64({3, 5}, 0, 16, -2, 2), uniform64({5}, 17), uniform64({5}, 18)}));
  EXPECT_TRUE(gradcheck(ln, {uniform64({7}, 19, -2, 2), uniform64({7}, 20), uniform64({7}, 21)}));
}

TEST(GradcheckEmbedding, RepeatedIds) {
  auto emb = [](const Inputs& v) { return embedding(v[0], v[1]); };
  const Tensor ids = int_tensor({1, 4, 1, 0, 5, 1, 4, 2}, {2, 4});
  EXPECT_TRUE(gradcheck(emb, {uniform64({6, 3}, 30), ids}));
  EXPECT_TRUE(gradcheck(emb, {uniform64({6, 3}, 31), int_tensor({3, 3, 3}, {3}, DType::i32)}));
  EXPECT_TRUE(gradcheck(emb, {transposed64({6, 3}, 32), ids}));
  EXPECT_TRUE(gradcheck(emb, {uniform64({6, 3}, 33), int_tensor({2}, {})}));  // 0-d ids -> (D)
}

TEST(GradcheckEmbedding, StridedIdsAndOutOfRange) {
  const Tensor every_other = int_tensor({0, 9, 2, 9, 3, 9}, {6}).as_strided({3}, {2}, 0);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return embedding(v[0], v[1]); }, {uniform64({4, 3}, 34), every_other}));
  EXPECT_THROW(embedding(uniform64({4, 3}, 35), int_tensor({4}, {1})), Error);
  EXPECT_THROW(embedding(uniform64({4, 3}, 36), int_tensor({-1}, {1})), Error);
}

TEST(GradcheckDropout, TrainingMaskIsRegeneratedFromTheSeed) {
  // A fresh Generator per evaluation: every forward (and the backward) draws the same mask.
  for (double p : {0.0, 0.3, 0.7}) {
    auto drop = [p](const Inputs& v) {
      Generator gen(1234);
      gen.take(17);  // start mid-stream
      return dropout(v[0], p, /*training=*/true, gen);
    };
    EXPECT_TRUE(gradcheck(drop, {uniform64({4, 5}, 40)})) << "p " << p;
    EXPECT_TRUE(gradcheck(drop, {transposed64({4, 5}, 41)})) << "p " << p << " transposed";
  }
}

TEST(GradcheckDropout, EvalIsIdentity) {
  auto drop = [](const Inputs& v) {
    Generator gen(5);
    return dropout(v[0], 0.5, /*training=*/false, gen);
  };
  EXPECT_TRUE(gradcheck(drop, {uniform64({3, 4}, 42)}));
}

TEST(GradcheckDropout, DropsAndScales) {
  Generator gen(7);
  const Tensor x = uniform64({1000}, 43, 1.0, 2.0);
  const std::vector<double> xv = host_values(x), yv = host_values(dropout(x, 0.25, true, gen));
  int dropped = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] == 0) {
      ++dropped;
    } else {
      EXPECT_NEAR(yv[i], xv[i] / 0.75, 1e-12) << i;
    }
  }
  EXPECT_GT(dropped, 190);
  EXPECT_LT(dropped, 310);
}

TEST(GradcheckCrossEntropy, ReductionsSmoothingAndIgnoreIndex) {
  const Tensor logits = uniform64({5, 4}, 50, -2, 2);
  const Tensor target = int_tensor({1, -100, 3, 0, 2}, {5});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    for (double smoothing : {0.0, 0.1}) {
      auto ce = [&](const Inputs& v) { return cross_entropy(v[0], v[1], -100, smoothing, r); };
      EXPECT_TRUE(gradcheck(ce, {logits, target})) << "reduction " << int(r) << " smoothing " << smoothing;
      EXPECT_TRUE(gradcheck(ce, {transposed64({5, 4}, 51, -2, 2), target}))
          << "transposed, reduction " << int(r) << " smoothing " << smoothing;
    }
  }
}

TEST(GradcheckCrossEntropy, CustomIgnoreIndex) {
  const Tensor target = int_tensor({2, 0, 2, 3, 1, 2}, {6});
  for (Reduction r : {Reduction::none, Reduction::mean, Reduction::sum}) {
    auto ce = [&](const Inputs& v) { return cross_entropy(v[0], v[1], /*ignore_index=*/2, 0.1, r); };
    EXPECT_TRUE(gradcheck(ce, {uniform64({6, 4}, 52, -2, 2), target})) << "reduction " << int(r);
  }
  // All but one ignored: the mean divides by one.
  auto ce = [](const Inputs& v) { return cross_entropy(v[0], v[1], -1, 0.1, Reduction::mean); };
  EXPECT_TRUE(gradcheck(ce, {uniform64({3, 5}, 53, -2, 2), int_tensor({-1, 4, -1}, {3})}));
}

TEST(GradcheckCrossEntropy, StridedTarget) {
  const Tensor every_other = int_tensor({0, 9, 2, 9, -100, 9}, {6}).as_strided({3}, {2}, 0);
  EXPECT_TRUE(gradcheck([](const Inputs& v) { return cross_entropy(v[0], v[1], -100, 0.1); },
                        {narrowed64({3, 4}, 1, 55, -2, 2), every_other}));
}

TEST(GradcheckCrossEntropy, ValueMatchesLogSoftmax) {
  // loss_n = -(1 - eps) logp[n, t] - eps / C sum_c logp[n, c]; mean over the 2 kept rows.
  const Tensor logits = uniform64({3, 4}, 54, -2, 2);
  const Tensor target = int_tensor({3, -100, 0}, {3});
  const double eps = 0.1;
  const std::vector<double> lp = host_values(log_softmax(logits));
  double expected = 0;
  for (int n : {0, 2}) {
    const int t = n == 0 ? 3 : 0;
    double row = 0;
    for (int c = 0; c < 4; ++c) row += lp[n * 4 + c];
    expected += -(1 - eps) * lp[n * 4 + t] - eps / 4 * row;
  }
  expected /= 2;
  EXPECT_NEAR(cross_entropy(logits, target, -100, eps).item(), expected, 1e-12);
}

TEST(GradcheckComposite, ScaledDotProductAttention) {
  // softmax(q k^T / sqrt(d) + mask) v over (batch, seq, d).
  auto attn = [](const Inputs& v) {
    const Tensor scores = mul(matmul(v[0], transpose(v[1], -1, -2)), 1.0 / std::sqrt(4.0));
    return matmul(softmax(masked_fill(scores, v[3], -1e9)), v[2]);
  };
  const Tensor causal = bool_tensor({0, 1, 1, 0, 0, 1, 0, 0, 0}, {3, 3});
  EXPECT_TRUE(gradcheck(attn, {uniform64({2, 3, 4}, 60), uniform64({2, 3, 4}, 61), uniform64({2, 3, 4}, 62), causal}));
}

TEST(GradcheckComposite, MlpWithLayerNormAndLoss) {
  auto mlp = [](const Inputs& v) {
    const Tensor h = gelu(linear(layer_norm(v[0], v[1], v[2]), v[3], v[4]));
    return cross_entropy(linear(h, v[5]), v[6], -100, 0.1);
  };
  EXPECT_TRUE(gradcheck(
      mlp, {uniform64({4, 3}, 70, -2, 2), uniform64({3}, 71, 0.5, 1.5), uniform64({3}, 72), uniform64({5, 3}, 73),
            uniform64({5}, 74), uniform64({4, 5}, 75), int_tensor({0, 3, -100, 2}, {4})}));
}

}  // namespace
}  // namespace px::test
