// bench/conv.cpp (bench_conv): px::conv2d forward + backward over a list of shapes, the peer of bench/conv_torch.py
// run alternately by bench/conv_vs_torch.py; prints one JSON line with each shape's median ms and GFLOP.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/backend/cpu/cpu_backend.h"
#include "core/ops/ops.h"

namespace pb = px::bench;
using px::Tensor;

namespace {

// One convolution: x (n, cin, h, w) * weight (cout, cin, k, k), stride, padding; x_grad: dL/dx wanted too.
struct Shape {
  std::string name;
  int64_t n, cin, h, w, cout, k, stride, pad;
  bool x_grad;
  int64_t out(int64_t size) const { return (size + 2 * pad - k) / stride + 1; }
  // forward 2 N Cout OH OW Cin k k, the same again for dW and for dX when x_grad
  double gflop() const {
    const double fwd = 2.0 * n * cout * out(h) * out(w) * cin * k * k;
    return fwd * (x_grad ? 3 : 2) * 1e-9;
  }
};

// "name:n,cin,h,w,cout,k,stride,pad,x_grad;..." (the driver's --shapes)
std::vector<Shape> parse_shapes(const std::string& spec) {
  std::vector<Shape> shapes;
  std::stringstream all(spec);
  std::string item;
  while (std::getline(all, item, ';')) {
    const auto colon = item.find(':');
    if (colon == std::string::npos) throw std::runtime_error("shape without a name: " + item);
    Shape s;
    s.name = item.substr(0, colon);
    std::stringstream nums(item.substr(colon + 1));
    std::vector<int64_t> v;
    std::string num;
    while (std::getline(nums, num, ',')) v.push_back(std::stoll(num));
    if (v.size() != 9) throw std::runtime_error("shape " + s.name + " needs 9 numbers");
    s.n = v[0], s.cin = v[1], s.h = v[2], s.w = v[3], s.cout = v[4], s.k = v[5], s.stride = v[6], s.pad = v[7];
    s.x_grad = v[8] != 0;
    shapes.push_back(s);
  }
  return shapes;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    pb::Args args(argc, argv, {"--threads", "--reps", "--warmup", "--shapes", "--max-col-kb", "--help"});
    if (args.has("--help") || !args.has("--shapes")) {
      std::cout << "bench_conv --shapes 'name:n,cin,h,w,cout,k,stride,pad,x_grad;...' [--threads N] [--reps R] "
                   "[--warmup W] [--max-col-kb KB (Conv2dOptions::max_col_bytes)]\n";
      return args.has("--help") ? 0 : 2;
    }
    const int threads = static_cast<int>(args.num("--threads", px::default_num_threads()));
    const int reps = static_cast<int>(args.num("--reps", 7));
    const int warmup = static_cast<int>(args.num("--warmup", 2));
    px::set_num_threads(threads);
    px::Generator gen(42);
    std::string out = "{\"impl\": \"parallax\", \"threads\": " + std::to_string(threads) +
                      ", \"peak_gflops\": " + std::to_string(pb::measured_fma_gflops(threads, 100.0)) +
                      ", \"shapes\": {";
    bool first = true;
    for (const Shape& s : parse_shapes(args.str("--shapes", ""))) {
      Tensor x = px::randn({s.n, s.cin, s.h, s.w}, gen);
      Tensor w = px::mul(px::randn({s.cout, s.cin, s.k, s.k}, gen), 0.05);
      if (s.x_grad) x.set_requires_grad();
      w.set_requires_grad();
      const Tensor gy = px::randn({s.n, s.cout, s.out(s.h), s.out(s.w)}, gen);
      px::Conv2dOptions o{.stride = s.stride, .padding = s.pad};
      o.max_col_bytes = args.num("--max-col-kb", 0) * 1024;
      auto step = [&] {
        x.set_grad(Tensor());
        w.set_grad(Tensor());
        px::backward(px::conv2d(x, w, Tensor(), o), gy);
      };
      for (int i = 0; i < warmup; ++i) step();
      const int inner = pb::inner_for(pb::time_ms(step, 1), 50.0);
      std::vector<double> t;
      for (int r = 0; r < reps; ++r) t.push_back(pb::time_ms(step, inner));
      char buf[256];
      std::snprintf(buf, sizeof buf, "%s\"%s\": {\"median_ms\": %.4f, \"min_ms\": %.4f, \"gflop\": %.5f}",
                    first ? "" : ", ", s.name.c_str(), pb::median(t), pb::min_of(t), s.gflop());
      out += buf;
      first = false;
    }
    std::printf("%s}}\n", out.c_str());
  } catch (const std::exception& e) {
    std::cerr << "bench_conv: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
