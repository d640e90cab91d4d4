// examples/spiral_mlp: the smallest Parallax training program, an MLP classifying 2-D spirals on the CPU,
// showing the tensor, autograd, nn and optim layers end to end with a falling loss (no launcher, no data files).
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/backend/cpu/cpu_backend.h"
#include "core/nn/linear.h"
#include "core/ops/ops.h"
#include "core/optim/sgd.h"
#include "core/util/error.h"
#include "core/util/logging.h"

#include <CLI/CLI.hpp>

namespace px {
namespace {

struct SpiralOptions {
  int64_t steps = 300;
  uint64_t seed = 0;
  int threads = 0;  // 0: default_num_threads()
};

// Three interleaved spiral arms in 2-D, one class per arm, with a little noise.
void make_spirals(int64_t per_class, Generator& gen, Tensor* x /* (N, 2) */, Tensor* y /* (N) */) {
  const int64_t classes = 3, n = per_class * classes;
  const std::vector<double> noise = to_vector(randn({n, 2}, gen, DType::f64));
  std::vector<double> xs(n * 2);
  std::vector<int64_t> ys(n);
  for (int64_t c = 0; c < classes; ++c)
    for (int64_t i = 0; i < per_class; ++i) {
      const int64_t k = c * per_class + i;
      const double r = static_cast<double>(i) / per_class;
      const double t = c * 2.0944 + r * 4.0;
      xs[2 * k] = r * std::sin(t) + 0.03 * noise[2 * k];
      xs[2 * k + 1] = r * std::cos(t) + 0.03 * noise[2 * k + 1];
      ys[k] = c;
    }
  *x = from_vector(xs, {n, 2});
  *y = from_vector(ys, {n});
}

// An MLP 2 -> hidden -> hidden -> 3 with ReLU.
class SpiralMlp : public nn::Module {
 public:
  SpiralMlp(int64_t hidden, Generator& gen) : Module("SpiralMlp") {
    fc1_ = register_module("fc1", std::make_shared<nn::Linear>(2, hidden, gen));
    fc2_ = register_module("fc2", std::make_shared<nn::Linear>(hidden, hidden, gen));
    fc3_ = register_module("fc3", std::make_shared<nn::Linear>(hidden, 3, gen));
  }
  // x (N, 2) -> logits (N, 3)
  Tensor forward(const Tensor& x) const { return (*fc3_)(relu((*fc2_)(relu((*fc1_)(x))))); }

 private:
  std::shared_ptr<nn::Linear> fc1_, fc2_, fc3_;
};

// Returns the exit code: 0 when the final loss is below the first.
int run_spirals(const SpiralOptions& options) {
  set_num_threads(options.threads > 0 ? options.threads : default_num_threads());
  Generator gen(options.seed);
  Tensor x, y;
  make_spirals(200, gen, &x, &y);
  const int64_t hidden = 64;
  SpiralMlp model(hidden, gen);
  optim::SGD optimizer({optim::ParamGroup{model.parameters(), 0.1}}, optim::SGDOptions{.momentum = 0.9});

  std::printf("spiral_mlp: MLP 2-%ld-%ld-3 (%ld parameters) on %ld spiral points, SGD momentum 0.9, %ld steps, "
              "%d threads\n",
              static_cast<long>(hidden), static_cast<long>(hidden), static_cast<long>(model.num_parameters()),
              static_cast<long>(x.size(0)), static_cast<long>(options.steps), num_threads());
  const auto start = std::chrono::steady_clock::now();
  double first_loss = 0, loss_value = 0;
  for (int64_t step = 1; step <= options.steps; ++step) {
    const Tensor logits = model.forward(x);
    const Tensor loss = cross_entropy(logits, y);
    optimizer.zero_grad();
    backward(loss);
    optimizer.step();
    loss_value = loss.item();
    if (step == 1) first_loss = loss_value;
    if (step == 1 || step % 25 == 0 || step == options.steps) {
      const double accuracy = to_vector(mean(to_dtype(eq(argmax(logits, 1), y), DType::f32)))[0];
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %5ld  loss %.4f  accuracy %5.1f%%  %.1f ms/step\n", static_cast<long>(step), loss_value,
                  100.0 * accuracy, ms / static_cast<double>(step));
    }
  }
  const bool fell = loss_value < first_loss;
  std::printf("loss %.4f -> %.4f: %s\n", first_loss, loss_value, fell ? "falling" : "NOT falling");
  return fell ? 0 : 1;
}

}  // namespace
}  // namespace px

int main(int argc, char** argv) {
  px::SpiralOptions options;
  CLI::App app{"spiral_mlp: train a small MLP on synthetic spirals on the CPU and print the falling loss"};
  app.add_option("--steps", options.steps, "training steps")->check(CLI::PositiveNumber);
  app.add_option("--seed", options.seed, "random seed");
  app.add_option("--threads", options.threads, "CPU threads (default: cores / local ranks)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  px::init_logging(argv[0], "", 0);
  return px::run_spirals(options);
}
