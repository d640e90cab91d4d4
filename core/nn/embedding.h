// Embedding: a (num_embeddings, dim) table of learned vectors looked up by integer ids,
// initialised N(0, 1) like torch.nn.Embedding.
#pragma once

#include "core/nn/module.h"
#include "core/util/generator.h"

namespace px::nn {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen, DType dtype = DType::f32);

  // ids i32/i64 (...) in [0, num_embeddings) -> (..., dim); out-of-range ids throw px::Error.
  Tensor forward(const Tensor& ids) const;
  Tensor operator()(const Tensor& ids) const { return forward(ids); }

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  const Tensor& weight() const { return weight_; }  // (num_embeddings, dim)

 private:
  int64_t num_embeddings_, embedding_dim_;
  Tensor weight_;  // (num_embeddings, dim)
};

}  // namespace px::nn
