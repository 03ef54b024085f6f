"""TracInCP's inner product for one checkpoint: <grad L(w, z), grad L(w, z')> for every (test, train)
pair, exact, from one batched backward per batch instead of one backward per example.

The tracin stage (runners.tracin) calls `checkpoint_scores` once per saved checkpoint c and stores lr_c times the
result; tests/reference/influence.py holds the one-backward-per-example reference (`naive_scores`) that tests and
benchmarks compare it with. The parts: `gradients` (which path each parameter takes, per-example gradients of a
batch), `forms` (the forms those gradients are kept and multiplied in), `projection` (random projections),
`scoring` (the test blocks and the train stream), `batches` (batches, masks, exact evaluation).

How the fast path works. A forward hook keeps the input and output of every nn.Linear,
nn.Embedding and nn.LayerNorm that owns a selected parameter; one `autograd.grad` of the summed
loss with respect to those outputs (not the parameters) gives each example's output gradients,
because examples do not interact in an eval-mode encoder. Each parameter's per-example gradient
then follows from the (input, output gradient) pair, and is dotted with the test gradients without
ever forming an n_train x n_params matrix:
  Linear weight   G_i = sum_t g_it a_it^T: materialised per example and dotted, or, when
                  T^2 (d_in + d_out) < d_in d_out (the classifier head, T = 1), the Gram identity
                  <G_i, G_j> = sum_{t,s} (a_it . a_js)(g_it . g_js);
  Linear bias     sum_t g_it;
  Embedding       <E_i, E_j> = sum_{t,s} [id_it = id_js] (g_it . g_js) by matching token ids, or
                  dense per-example rows for small tables (positions, token types); padding_idx
                  rows get no gradient, as in PyTorch;
  LayerNorm       weight sum_t g_it * xhat_it, bias sum_t g_it.
Any other selected parameter (another module type, a parameter tied between modules, a module whose
batch dimension is not first or whose input or output is changed in place) takes a slow but exact
path, one backward per example for those parameters only, and is logged as a warning: nothing is
silently dropped. The fast path assumes what holds for the encoders here: in eval mode examples do
not interact, and a fast module's parameters are used only inside its own forward.

Memory: one train batch's activations and output gradients, one reused buffer for its per-example
gradients of the widest dense-path Linear (B x d_in x d_out), plus the test block: per test example,
d_in x d_out for each dense-path Linear, (tokens x width) for Gram-path Linears and large embedding
tables. `test_block_bytes` bounds the block; nothing grows with n_train.

Random projection (approximate, `projection_dim=d`): every parameter tensor with more than d entries
has its per-example gradient G (viewed as m x n: a Linear weight out x in, an embedding vocab x
width, a vector 1 x n) replaced by P_rows G P_cols^T = (P_rows (x) P_cols) vec(G), at most d numbers.
Gaussian P with E[P^T P] = I makes each score unbiased. Linears and embeddings project their factors
before the outer product (sum_t (P_rows g_t)(P_cols a_t)^T, P_rows columns gathered by token id), so
the m x n per-example gradient is never formed; tensors with at most d entries stay exact. P depends
only on (seed, parameter name, shape): train, test and every checkpoint share it.
"""

from runners.methods.influence.projection import Projection, random_projections
from runners.methods.influence.scoring import CheckpointScores, checkpoint_influence, checkpoint_scores
from runners.methods.influence.gradients import selected_parameters

__all__ = ["CheckpointScores", "Projection", "checkpoint_influence", "checkpoint_scores", "random_projections", "selected_parameters"]
