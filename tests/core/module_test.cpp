// nn::Module: hierarchical names, registration order, tied parameters, train/eval propagation,
// state dict round trips and the CheckpointErrors of load_state_dict.
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/nn/feed_forward.h"
#include "core/nn/layer_norm.h"
#include "core/nn/linear.h"
#include "core/nn/module_list.h"
#include "core/ops/ops.h"
#include "core/util/error.h"
#include "tests/common/compare.h"

namespace px::test {
namespace {

// A layer with a parameter of its own, a buffer, and children: enough shape for every naming rule.
class Block : public nn::Module {
 public:
  Block(int64_t d, Generator& gen) : Module("Block") {
    scale_ = register_parameter("scale", ones({d}));  // (d)
    count_ = register_buffer("count", zeros({1}));  // (1)
    scratch_ = register_buffer("scratch", zeros({d}), /*persistent=*/false);  // (d)
    ff_ = register_module("ff", std::make_shared<nn::FeedForward>(d, 2 * d, nn::Activation::relu, 0.1, gen));
    norm_ = register_module("norm", std::make_shared<nn::LayerNorm>(d));
  }
  // x (..., d) -> (..., d)
  Tensor forward(const Tensor& x) const { return norm_->forward(x + ff_->forward(x) * scale_); }

  Tensor scale_, count_, scratch_;
  std::shared_ptr<nn::FeedForward> ff_;
  std::shared_ptr<nn::LayerNorm> norm_;
};

class Encoder : public nn::Module {
 public:
  Encoder(int64_t d, int n, Generator& gen) : Module("Encoder") {
    embed_ = register_module("embed", std::make_shared<nn::Linear>(3, d, gen));
    layers_ = register_module("layers", std::make_shared<nn::ModuleList>());
    for (int i = 0; i < n; ++i) layers_->push_back(std::make_shared<Block>(d, gen));
  }
  Tensor forward(const Tensor& x) const {
    Tensor h = embed_->forward(x);
    for (size_t i = 0; i < layers_->size(); ++i) h = layers_->at<Block>(i)->forward(h);
    return h;
  }
  std::shared_ptr<nn::Linear> embed_;
  std::shared_ptr<nn::ModuleList> layers_;
};

class Model : public nn::Module {
 public:
  explicit Model(uint64_t seed) : Module("Model"), gen_(seed) {
    encoder_ = register_module("encoder", std::make_shared<Encoder>(4, 2, gen_));
    head_ = register_module("head", std::make_shared<nn::Linear>(4, 2, gen_));
  }
  Tensor forward(const Tensor& x) const { return head_->forward(encoder_->forward(x)); }
  Generator gen_;
  std::shared_ptr<Encoder> encoder_;
  std::shared_ptr<nn::Linear> head_;
};

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Tensor>>& named) {
  std::vector<std::string> out;
  for (const auto& [name, t] : named) out.push_back(name);
  return out;
}

TEST(Module, HierarchicalNamesInTorchOrder) {
  Model m(1);
  const std::vector<std::string> block = {"scale", "ff.fc1.weight", "ff.fc1.bias", "ff.fc2.weight",
                                          "ff.fc2.bias", "norm.weight", "norm.bias"};
  std::vector<std::string> expected = {"encoder.embed.weight", "encoder.embed.bias"};
  for (int i = 0; i < 2; ++i)
    for (const std::string& n : block) expected.push_back("encoder.layers." + std::to_string(i) + "." + n);
  expected.push_back("head.weight");
  expected.push_back("head.bias");
  EXPECT_EQ(names_of(m.named_parameters()), expected);
  EXPECT_EQ(m.parameters().size(), expected.size());
  EXPECT_EQ(names_of(m.named_buffers()),
            (std::vector<std::string>{"encoder.layers.0.count", "encoder.layers.0.scratch",
                                      "encoder.layers.1.count", "encoder.layers.1.scratch"}));
  const int64_t per_block = 4 + (8 * 4 + 8) + (4 * 8 + 4) + 4 + 4;
  EXPECT_EQ(m.num_parameters(), (3 * 4 + 4) + 2 * per_block + (4 * 2 + 2));
  for (const Tensor& p : m.parameters()) EXPECT_TRUE(p.requires_grad() && p.is_leaf());
  for (const auto& [name, b] : m.named_buffers()) EXPECT_FALSE(b.requires_grad()) << name;

  std::vector<std::string> modules;
  for (const auto& [name, mod] : m.named_modules()) modules.push_back(name + ":" + mod->type_name());
  EXPECT_EQ(modules.front(), ":Model");
  EXPECT_EQ(modules[3], "encoder.layers:ModuleList");
  EXPECT_EQ(modules[4], "encoder.layers.0:Block");
  EXPECT_EQ(modules[5], "encoder.layers.0.ff:FeedForward");
  EXPECT_EQ(modules.back(), "head:Linear");
}

TEST(Module, TiedParametersAppearOnce) {
  class Tied : public nn::Module {
   public:
    explicit Tied(Generator& gen) : Module("Tied") {
      a_ = register_module("a", std::make_shared<nn::Linear>(3, 3, gen, false));
      w_ = register_parameter("w", a_->weight());  // the same tensor under a second name
    }
    std::shared_ptr<nn::Linear> a_;
    Tensor w_;
  };
  Generator gen(2);
  Tied t(gen);
  EXPECT_EQ(names_of(t.named_parameters()), std::vector<std::string>{"w"});
  const nn::StateDict sd = t.state_dict();
  EXPECT_EQ(sd.size(), 2u);  // both names are saved, like torch
  EXPECT_TRUE(sd.count("a.weight") && sd.count("w"));
}

TEST(Module, TrainEvalPropagatesToEveryDescendant) {
  Model m(3);
  for (const auto& [name, mod] : m.named_modules()) EXPECT_TRUE(mod->is_training()) << name;
  m.eval();
  for (const auto& [name, mod] : m.named_modules()) EXPECT_FALSE(mod->is_training()) << name;
  m.encoder_->train();
  EXPECT_FALSE(m.is_training());
  EXPECT_FALSE(m.head_->is_training());
  for (const auto& [name, mod] : m.encoder_->named_modules()) EXPECT_TRUE(mod->is_training()) << name;
  // Dropout in eval is deterministic, in training it is not.
  m.eval();
  Generator gen(4);
  const Tensor x = randn({5, 3}, gen);
  EXPECT_ALL_CLOSE(m.forward(x), m.forward(x), 0, 0);
  m.train();
  EXPECT_FALSE(all_close(m.forward(x), m.forward(x), 1e-4, 1e-4));
}

TEST(Module, StateDictRoundTrip) {
  Model a(10), b(20);
  Generator gen(5);
  const Tensor x = randn({6, 3}, gen);
  a.eval();
  b.eval();
  EXPECT_FALSE(all_close(a.forward(x), b.forward(x), 1e-3, 1e-3));
  {
    NoGradGuard no_grad;
    fill_(a.encoder_->layers_->at<Block>(1)->count_, 7.0);
  }
  const nn::StateDict sd = a.state_dict();
  EXPECT_EQ(sd.size(), a.named_parameters().size() + 2);  // + persistent buffers
  EXPECT_FALSE(sd.count("encoder.layers.0.scratch"));  // non-persistent buffers stay out
  const Tensor b_head = b.head_->weight();
  b.load_state_dict(sd);
  EXPECT_ALL_CLOSE(b.forward(x), a.forward(x), 0, 0);
  EXPECT_EQ(to_vector(b.encoder_->layers_->at<Block>(1)->count_)[0], 7.0);
  // Loading copies into the existing tensors: handles held by layers stay the parameters.
  EXPECT_EQ(b.head_->weight().impl(), b_head.impl());
  EXPECT_EQ(b.parameters().back().impl(), b.head_->bias().impl());
  EXPECT_TRUE(b_head.requires_grad());
  // The state dict is a copy only in the sense of load: it shares storage with the source module.
  EXPECT_EQ(sd.at("head.weight").storage().get(), a.head_->weight().storage().get());
  // Training still works after loading.
  Tensor loss = sum(b.forward(x));
  backward(loss);
  for (const auto& [name, p] : b.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
}

TEST(Module, LoadStateDictErrorsNameTheKey) {
  Model m(11);
  const nn::StateDict good = m.state_dict();
  auto expect_error = [&](const nn::StateDict& sd, const std::string& needle, bool strict = true) {
    try {
      m.load_state_dict(sd, strict);
      ADD_FAILURE() << "no CheckpointError for " << needle;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  nn::StateDict missing = good;
  missing.erase("encoder.layers.1.norm.bias");
  expect_error(missing, "missing key 'encoder.layers.1.norm.bias'");
  nn::StateDict shape = good;
  shape["head.weight"] = zeros({3, 4});
  expect_error(shape, "'head.weight' has shape");
  nn::StateDict dtype = good;
  dtype["encoder.embed.bias"] = zeros({4}, DType::f64);
  expect_error(dtype, "'encoder.embed.bias' has dtype f64");
  nn::StateDict extra = good;
  extra["encoder.layers.2.scale"] = ones({4});
  expect_error(extra, "unexpected key 'encoder.layers.2.scale'");
  // A failed load changes nothing.
  const std::vector<double> before = to_vector(m.head_->weight());
  shape["head.bias"] = full({2}, 3.0);
  expect_error(shape, "head.weight");
  EXPECT_EQ(to_vector(m.head_->weight()), before);
  EXPECT_NE(to_vector(m.head_->bias())[0], 3.0);
  // Non-strict skips missing and unexpected keys but still checks shapes.
  EXPECT_NO_THROW(m.load_state_dict(missing, /*strict=*/false));
  EXPECT_NO_THROW(m.load_state_dict(extra, /*strict=*/false));
  expect_error(shape, "'head.weight' has shape", /*strict=*/false);
}

TEST(Module, ZeroGrad) {
  Model m(12);
  Generator gen(6);
  backward(sum(m.forward(randn({2, 3}, gen))));
  for (const Tensor& p : m.parameters()) ASSERT_TRUE(p.grad().defined());
  m.zero_grad(/*set_to_none=*/false);
  for (const Tensor& p : m.parameters()) {
    ASSERT_TRUE(p.grad().defined());
    for (double v : to_vector(p.grad())) EXPECT_EQ(v, 0.0);
  }
  m.zero_grad();
  for (const Tensor& p : m.parameters()) EXPECT_FALSE(p.grad().defined());
}

}  // namespace
}  // namespace px::test
