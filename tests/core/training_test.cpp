// End-to-end optimisation: a tiny MLP learns XOR-like data with AdamW and a softmax regression
// reaches a stated held-out accuracy with SGD momentum, so the optimizers truly optimise.
#include <cmath>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/adamw.h"
#include "core/optim/lr_schedule.h"
#include "core/optim/sgd.h"

namespace px::test {
namespace {

// Fraction of rows whose argmax matches the label. logits (N, C), labels i64 (N)
double accuracy(const Tensor& logits, const Tensor& labels) {
  const std::vector<double> pred = to_vector(argmax(logits, 1)), y = to_vector(labels);
  int correct = 0;
  for (size_t i = 0; i < y.size(); ++i) correct += pred[i] == y[i];
  return static_cast<double>(correct) / static_cast<double>(y.size());
}

class Mlp : public nn::Module {
 public:
  Mlp(int64_t in, int64_t hidden, int64_t out, Generator& gen) : Module("Mlp") {
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(in, hidden, gen));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(hidden, out, gen));
  }
  // x (N, in) -> logits (N, out)
  Tensor forward(const Tensor& x) const { return fc2_->forward(tanh(fc1_->forward(x))); }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_;
};

TEST(Training, MlpLearnsXorWithAdamW) {
  // Points in the four quadrants at least 0.1 away from the axes; label 1 when x * y > 0.
  Generator gen(42);
  const int64_t n = 256;
  const std::vector<double> u = to_vector(rand({n, 2}, gen, -1.0, 1.0));
  std::vector<double> xs(2 * n);
  std::vector<int64_t> ys(n);
  for (int64_t i = 0; i < n; ++i) {
    for (int d = 0; d < 2; ++d) {
      const double v = u[2 * i + d];
      xs[2 * i + d] = (v < 0 ? -1.0 : 1.0) * (0.1 + 0.9 * std::abs(v));
    }
    ys[i] = xs[2 * i] * xs[2 * i + 1] > 0 ? 1 : 0;
  }
  const Tensor x = from_vector(xs, {n, 2}), y = from_vector(ys, {n});

  Mlp mlp(2, 16, 2, gen);
  optim::AdamW opt(mlp.parameters(), /*lr=*/0.03, /*weight_decay=*/1e-4);
  double loss_value = 0;
  for (int step = 1; step <= 400; ++step) {
    opt.zero_grad();
    const Tensor loss = cross_entropy(mlp.forward(x), y);
    backward(loss);
    opt.step();
    loss_value = loss.item();
  }
  NoGradGuard no_grad;
  const Tensor logits = mlp.forward(x);
  const double acc = accuracy(logits, y);
  const double final_loss = cross_entropy(logits, y).item();
  RecordProperty("xor_accuracy", std::to_string(acc));
  EXPECT_GE(acc, 0.98) << "loss " << final_loss;
  EXPECT_LT(final_loss, 0.1) << "accuracy " << acc;
  EXPECT_LT(final_loss, loss_value + 1e-3);
}

// Four 2-D Gaussian blobs (std 1) centred at radius 4 on the axes: separable up to ~0.5% overlap.
void blobs(int64_t n, Generator& gen, Tensor& x, Tensor& y) {
  const double centres[4][2] = {{4, 0}, {0, 4}, {-4, 0}, {0, -4}};
  std::vector<double> noise = to_vector(randn({n, 2}, gen));
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = i % 4;
    noise[2 * i] += centres[i % 4][0];
    noise[2 * i + 1] += centres[i % 4][1];
  }
  x = from_vector(noise, {n, 2});
  y = from_vector(labels, {n});
}

TEST(Training, SoftmaxRegressionWithSgdMomentum) {
  Generator gen(7);
  Tensor x_train, y_train, x_test, y_test;
  blobs(400, gen, x_train, y_train);
  blobs(400, gen, x_test, y_test);
  nn::Linear model(2, 4, gen);
  optim::SGD opt(model.parameters(), /*lr=*/0.1, {/*momentum=*/0.9});
  const optim::CosineSchedule schedule(/*warmup=*/10, /*total=*/150, /*min_lr_ratio=*/0.1);
  double first_loss = 0, last_loss = 0;
  for (int step = 1; step <= 150; ++step) {
    optim::apply_schedule(opt, schedule, step);
    opt.zero_grad();
    const Tensor loss = cross_entropy(model.forward(x_train), y_train);
    backward(loss);
    opt.step();
    (step == 1 ? first_loss : last_loss) = loss.item();
  }
  NoGradGuard no_grad;
  const double acc = accuracy(model.forward(x_test), y_test);
  RecordProperty("blob_accuracy", std::to_string(acc));
  EXPECT_GE(acc, 0.95) << "train loss " << first_loss << " -> " << last_loss;
  EXPECT_LT(last_loss, 0.5 * first_loss);
}

}  // namespace
}  // namespace px::test
