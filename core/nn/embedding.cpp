// Embedding: the N(0, 1) table and the lookup through px::embedding (whose backward scatter-adds).
// Shared input/output embeddings reuse this module's weight() in another layer.
#include "core/nn/embedding.h"

#include "core/ops/embedding.h"
#include "core/ops/factory.h"

namespace px::nn {

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim, Generator& gen, DType dtype)
    : Module("Embedding"), num_embeddings_(num_embeddings), embedding_dim_(embedding_dim) {
  CHECK(num_embeddings > 0 && embedding_dim > 0)
      << "Embedding: sizes must be positive, got " << num_embeddings << " x " << embedding_dim;
  weight_ = register_parameter("weight", randn({num_embeddings, embedding_dim}, gen, dtype));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

}  // namespace px::nn
