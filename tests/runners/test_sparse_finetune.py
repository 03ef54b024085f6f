"""Sparse fine-tuning: a step of language l moves only l's heads (and the shared parameters), bit
for bit, even with AdamW momentum and weight decay; with every head kept it is ordinary
fine-tuning on language-pure batches; over a whole run, a head no language keeps never moves."""

from __future__ import annotations

import pyarrow.parquet as pq
import torch

from runners.context import TaskContext
from runners.methods import fine_tuning
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods import heads, models, toy, training
from runners.inputs import Data, Subnetwork

TINY = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 32, "intermediate": 64, "vocab_size": 300})


def head_slice(model, name: str, layer: int, head: int) -> torch.Tensor:
    """One head's slice of a per-head parameter, read independently of runners.methods.heads."""
    d = model.config.hidden_size // model.config.num_attention_heads
    block = model.roberta.encoder.layer[layer].attention
    if name == "output":
        return block.output.dense.weight[:, head * d : (head + 1) * d]
    linear = getattr(block.self, name)
    return torch.cat([linear.weight[head * d : (head + 1) * d].flatten(), linear.bias[head * d : (head + 1) * d]])


def moments(optimizer, parameter) -> list[torch.Tensor]:
    state = optimizer.state[parameter]
    return [state["exp_avg"].clone(), state["exp_avg_sq"].clone()]


def test_a_step_moves_only_the_masks_heads_and_the_shared_parameters():
    torch.manual_seed(0)
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    config = XLMRobertaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, max_position_embeddings=40, hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0, num_labels=3, pad_token_id=1)
    model = XLMRobertaForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)

    def batch(seed):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(5, 50, (4, 9), generator=g)
        attention = torch.ones_like(ids)
        ids[0, 6:], attention[0, 6:] = 1, 0  # padding present
        return {"input_ids": ids, "attention_mask": attention, "labels": torch.randint(0, 3, (4,), generator=g)}

    def step(mask, seed):
        with heads.only_heads(model, optimizer, mask):
            model(**batch(seed)).loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Earlier steps of other languages give every head momentum.
    step(torch.ones(2, 4), 1)
    step(torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0]]), 2)
    mask = torch.tensor([[0.0, 1, 1, 0], [1, 0, 0, 1]])  # this language's subnetwork
    names = ("query", "key", "value", "output")
    before = {(n, l, h): head_slice(model, n, l, h).detach().clone() for n in names for l in range(2) for h in range(4)}
    weight = model.roberta.encoder.layer[0].attention.self.query.weight
    momentum_before = moments(optimizer, weight)
    shared = {n: p.detach().clone() for n, p in model.named_parameters()
              if "attention.self" not in n and "attention.output.dense.weight" not in n}
    step(mask, 3)

    for (name, l, h), old in before.items():
        new = head_slice(model, name, l, h)
        if mask[l, h] == 0:
            assert torch.equal(new, old), (name, l, h)
        else:
            assert not torch.equal(new, old), (name, l, h)
    # Layer 0's query rows of the frozen heads 0 and 3: AdamW's moments are frozen too.
    d = 8
    for old, new in zip(momentum_before, moments(optimizer, weight)):
        assert torch.equal(new[0:d], old[0:d]) and torch.equal(new[3 * d :], old[3 * d :])
        assert not torch.equal(new[d : 3 * d], old[d : 3 * d])
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], old) for n, old in shared.items()), "every shared parameter moves"


def test_with_every_head_kept_sft_is_fine_tuning_on_language_pure_batches(study, tmp_path):
    config = FinetuneSpec(epochs=2, lr=2e-3, batch_size=16, max_length=32)
    ones = {lang: torch.ones(2, 4) for lang in study.languages}
    fine_tuning.fine_tune(Data(study.data), tmp_path, TaskContext(), seed=3, model_spec=TINY, config=config,
                       masks=ones, language_sampling="round_robin")
    sft, _ = models.load_checkpoint(tmp_path / "checkpoints" / "epoch-2")

    # The same training by hand: same initialisation, same batches, no masks and no confinement.
    rows = Data(study.data).examples()
    train_rows = [r for r in rows if r["split"] == "train"]
    tokenizer = models.build_tokenizer(TINY, [t for r in train_rows for t in (r["text_a"], r["text_b"])])
    model = models.build_model(TINY, tokenizer, toy.LABELS, config.max_length, 3)
    train = models.encode(tokenizer, train_rows, config.max_length)
    orders = training.language_batches(train.languages, config.batch_size, 3, "round_robin")
    for _ in training.train(model, train, orders, epochs=2, lr=config.lr, weight_decay=config.weight_decay,
                            warmup_ratio=config.warmup_ratio, pad_id=tokenizer.pad_token_id,
                            device=torch.device("cpu"), report=lambda *a: None):
        pass
    reference = model.state_dict()
    for name, value in sft.state_dict().items():
        assert torch.equal(value, reference[name]), name


def test_language_pure_batches_and_sampling():
    languages = ["ka"] * 5 + ["la"] * 3
    for sampling in ("proportional", "round_robin"):
        orders = training.language_batches(languages, 2, 0, sampling)
        epoch = orders(0)
        assert all(len({languages[i] for i in b}) == 1 for b in epoch)
        assert sorted(i for b in epoch for i in b) == list(range(8))
        assert len(epoch) == 3 + 2 and orders(0) == epoch and orders(1) != epoch
    round_robin = training.language_batches(languages, 2, 0, "round_robin")(0)
    assert [languages[b[0]] for b in round_robin] == ["ka", "la", "ka", "la", "ka"]


def test_heads_no_language_keeps_never_move(study):
    """Over the whole SFT run: every slice of a head outside every subnetwork is still its initial value."""
    masks = {lang: Subnetwork(study.subnetwork(lang)).mask() for lang in study.languages}
    nobody = [(l, h) for l in range(2) for h in range(4) if all(m[l, h] == 0 for m in masks.values())]
    somebody = [(l, h) for l in range(2) for h in range(4) if (l, h) not in nobody]
    assert nobody and somebody
    rows = Data(study.data).examples()
    tokenizer = models.build_tokenizer(study.model, [t for r in rows if r["split"] == "train" for t in (r["text_a"], r["text_b"])])
    initial = models.build_model(study.model, tokenizer, toy.LABELS, study.max_length, 0)
    final, _ = models.load_checkpoint(study.sft / "checkpoints" / f"epoch-{study.epochs}")
    for name in ("query", "key", "value", "output"):
        for l, h in nobody:
            assert torch.equal(head_slice(final, name, l, h), head_slice(initial, name, l, h)), (name, l, h)
        for l, h in somebody:
            assert not torch.equal(head_slice(final, name, l, h), head_slice(initial, name, l, h)), (name, l, h)


def test_sft_tables(study):
    checkpoints = pq.read_table(study.sft / "tables" / "checkpoints.parquet").to_pylist()
    assert [(c["variant"], c["epoch"]) for c in checkpoints] == [("sft", e) for e in range(1, study.epochs + 1)]
    assert all(c["learning_rate"] > 0 for c in checkpoints)
    metrics = pq.read_table(study.sft / "tables" / "metrics.parquet").to_pylist()
    assert {(m["variant"], m["language"], m["split"]) for m in metrics} == {
        ("sft", lang, split) for lang in study.languages for split in ("validation", "test")}
    assert len(metrics) == 2 * 2 * study.epochs
