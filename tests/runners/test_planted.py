"""Fine-tuning with planted language modules (`planted.overlap`): the head sets are laid out as
documented, a language's examples train only its family's heads (checked on the weights themselves),
the silence term is what a naive loop over examples, heads and tokens gives and does silence the
other heads, overlap 1 is ordinary fine-tuning bit for bit, and ordinary fine-tuning keeps its key.
Graded planting (`planted.leak`): the other heads run at gate leak, are trained by every family
through it, leak 1 without silence is ordinary fine-tuning, and leak 0 keeps every key."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from runners import data, finetune
from runners.context import TaskContext
from runners.data import DataSpec
from runners.finetune import PlantedSpec
from runners.methods import fine_tuning
from runners.methods.sections import FinetuneSpec, ModelSpec
from runners.methods import heads, models
from runners.methods.heads import planted_sets
from runners.inputs import Data, Inputs
from tests.conftest import task_keys

TINY = ModelSpec(tiny={"layers": 2, "heads": 4, "hidden": 16, "intermediate": 32, "vocab_size": 200})
HEAD_DIM = 4


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_planted_sets_share_the_overlap_and_split_the_rest(overlap):
    layers, heads, families = 4, 4, ["k", "l", "m"]
    sets = planted_sets(layers, heads, families, overlap, seed=3)
    shared = sum(1 for l in range(layers) for h in range(heads) if all(sets[f][l, h] for f in families))
    owned = [sum(1 for f in families if sets[f][l, h]) for l in range(layers) for h in range(heads)]
    assert shared == round(overlap * 16)
    assert all(count in (1, 3) for count in owned)  # every head: shared by all, or one family's own
    sizes = sorted(int(sets[f].sum()) - shared for f in families)
    assert sum(sizes) == 16 - shared and sizes[-1] - sizes[0] <= 1  # the rest dealt out evenly
    if overlap == 0.0:
        assert all(int(sets[f].sum(1).min()) >= 1 for f in families)  # each family has a head in every layer
    again, other = planted_sets(layers, heads, families, overlap, seed=3), planted_sets(layers, heads, families, overlap, seed=4)
    assert all(torch.equal(sets[f], again[f]) for f in families)  # the seed fixes the layout...
    assert overlap == 1.0 or any(not torch.equal(sets[f], other[f]) for f in families)  # ...and another seed moves it


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    spec = DataSpec(languages=["ka", "kb", "la"], train_per_language=24, validation_per_language=8, test_per_language=8)
    data.run(data.Params(data=spec, fingerprint=""), Inputs({}), path, TaskContext())
    return path


def fine_tune(data_dir, workdir, overlap, silence=0.3, leak=0.0, **config):
    families = {"ka": "k", "kb": "k", "la": "l"}
    planted = PlantedSpec(overlap=overlap, silence=silence, leak=leak) if overlap is not None else None
    params = finetune.Params(
        seed=1, model=TINY, finetune=FinetuneSpec(epochs=2, lr=1e-2, batch_size=8, max_length=24, **config),
        **({"planted": planted, "families": families} if planted is not None else {}),
    )
    workdir.mkdir()
    torch.manual_seed(0)
    finetune.run(params, Inputs({"data": data_dir}), workdir, TaskContext())
    return load_file(workdir / "checkpoints/epoch-2/model.safetensors"), pq.read_table(workdir / "tables/metrics.parquet").to_pylist()


def head_slices(weights, layer: int, head: int) -> list[torch.Tensor]:
    rows = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
    prefix = f"roberta.encoder.layer.{layer}.attention"
    return [weights[f"{prefix}.self.{m}.weight"][rows] for m in ("query", "key", "value")] + [
        weights[f"{prefix}.self.{m}.bias"][rows] for m in ("query", "key", "value")] + [
        weights[f"{prefix}.output.dense.weight"][:, rows]]


def but_the_key_bias(slices: list) -> list:
    """head_slices' entries less the key bias: it adds the same to all of a query's scores, which the
    softmax ignores, so its gradient is rounding noise (about 1e-15 where the others are 1e-8 to 1e-5)."""
    return slices[:4] + slices[5:]


def test_a_family_trains_only_its_planted_heads(data_dir, tmp_path):
    """Without the silence term, with one family's languages only and no weight decay, the heads
    outside that family's set leave training exactly as initialised, and every head of the set moves."""
    trained, _ = fine_tune(data_dir, tmp_path / "planted", 0.0, silence=0.0, weight_decay=0.0)
    initial = models.build_model(TINY, models.load_checkpoint(tmp_path / "planted/checkpoints/epoch-2")[1], ["a", "b", "c"], 24, 1).state_dict()
    planted = pq.read_table(tmp_path / "planted/tables/planted_heads.parquet").to_pylist()
    k_heads = {(r["layer"], r["head"]) for r in planted if r["language"] == "ka" and r["kept"]}
    l_heads = {(r["layer"], r["head"]) for r in planted if r["language"] == "la" and r["kept"]}
    assert k_heads and l_heads and not k_heads & l_heads and len(k_heads | l_heads) == 8
    assert {(r["layer"], r["head"]) for r in planted if r["language"] == "kb" and r["kept"]} == k_heads
    for layer, head in k_heads | l_heads:
        moved = [not torch.equal(a, b) for a, b in zip(head_slices(trained, layer, head), head_slices(initial, layer, head))]
        assert all(moved), (layer, head)  # both families trained here: every set's heads move
    # Now the k family alone (its languages' examples only): the l family's heads stay put.
    workdir = tmp_path / "k-only"
    workdir.mkdir()
    fine_tuning.fine_tune(Data(data_dir), workdir, TaskContext(), seed=1, model_spec=TINY,
           config=FinetuneSpec(epochs=1, lr=1e-2, batch_size=8, max_length=24, weight_decay=0.0),
           train_languages=("ka", "kb"), planted=PlantedSpec(overlap=0.0, silence=0.0), families={"ka": "k", "kb": "k", "la": "l"})
    k_trained = load_file(workdir / "checkpoints/epoch-1/model.safetensors")
    for layer, head in l_heads:
        assert all(torch.equal(a, b) for a, b in zip(head_slices(k_trained, layer, head), head_slices(initial, layer, head)))
    for layer, head in k_heads:
        assert not all(torch.equal(a, b) for a, b in zip(head_slices(k_trained, layer, head), head_slices(initial, layer, head)))


def naive_silence(model, batch, sets, silence, gates=None):
    """The silence term by loops: each head's output is read where the self-attention hands it on
    (before any gate), written through its columns of the output projection one token at a time,
    for the heads outside each example's set; the model runs under `gates` (default: the sets)."""
    outputs = {}
    blocks = model.base_model.encoder.layer
    handles = [block.attention.self.register_forward_hook(
        lambda module, args, output, layer=layer: outputs.__setitem__(layer, output[0].detach()))
        for layer, block in enumerate(blocks)]
    with torch.no_grad(), heads.head_mask(model, sets if gates is None else gates):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for handle in handles:
        handle.remove()
    total, pairs = 0.0, 0
    for b in range(len(sets)):
        length = int(batch["attention_mask"][b].sum())
        for layer, block in enumerate(blocks):
            weight = block.attention.output.dense.weight.detach()
            for head in range(sets.shape[-1]):
                if sets[b, layer, head]:
                    continue
                columns = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
                writes = [float((weight[:, columns] @ outputs[layer][b, t, columns]).pow(2).sum()) for t in range(length)]
                total, pairs = total + sum(writes) / length, pairs + 1
    return silence * total / pairs


def batch_of(data_dir, tokenizer, rows_wanted):
    rows = [r for r in Data(data_dir).examples() if r["split"] == "train"][:rows_wanted]
    encoded = models.encode(tokenizer, rows, 24)
    return models.collate(encoded, list(range(len(encoded))), tokenizer.pad_token_id, torch.device("cpu")), encoded.languages


def test_the_silence_term_is_the_other_heads_mean_squared_write(data_dir):
    """planted_modules' term against the naive loop, on a batch with padding and every family; the
    task loss beside it is the one head_mask alone gives."""
    train = [r for r in Data(data_dir).examples() if r["split"] == "train"]
    tokenizer = models.build_tokenizer(TINY, [t for r in train for t in (r["text_a"], r["text_b"]) if t])
    model = models.build_model(TINY, tokenizer, ["a", "b", "c"], 24, 1).eval()
    batch, languages = batch_of(data_dir, tokenizer, 60)
    sets = planted_sets(2, 4, ["k", "l"], 0.25, seed=1)
    gates = torch.stack([sets["l" if language == "la" else "k"] for language in languages])  # (B, L, H)
    assert {"ka", "kb", "la"} <= set(languages) and int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()
    with heads.planted_modules(model, gates, 0.5, 0.0) as term:
        loss = model(**batch).loss
        value = term(batch)
    with heads.head_mask(model, gates):
        assert torch.equal(model(**batch).loss, loss)
    assert value.item() == pytest.approx(naive_silence(model, batch, gates, 0.5), rel=1e-5)
    with heads.planted_modules(model, torch.ones_like(gates), 0.5, 0.0) as term:
        assert term is None  # every head in every set: nothing to silence


def test_silence_quiets_the_heads_outside_a_language_set(data_dir, tmp_path):
    """Trained with the silence term, the heads outside a family's set write less into its examples
    than trained without it: measured by the naive loop on each model's final weights, on the same batch."""
    energies = {}
    for silence in (0.0, 10.0):
        workdir = tmp_path / f"silence-{silence}"
        fine_tune(data_dir, workdir, 0.0, silence=silence)
        model, tokenizer = models.load_checkpoint(workdir / "checkpoints/epoch-2")
        batch, languages = batch_of(data_dir, tokenizer, 72)
        planted = pq.read_table(workdir / "tables/planted_heads.parquet").to_pylist()
        sets = {lang: torch.zeros(2, 4) for lang in ("ka", "kb", "la")}
        for r in planted:
            sets[r["language"]][r["layer"], r["head"]] = float(r["kept"])
        gates = torch.stack([sets[language] for language in languages])
        energies[silence] = naive_silence(model.eval(), batch, gates, 1.0)
    assert energies[10.0] < 0.5 * energies[0.0], energies


def test_overlap_one_is_ordinary_fine_tuning_bit_for_bit(data_dir, tmp_path):
    planted, planted_metrics = fine_tune(data_dir, tmp_path / "planted", 1.0)
    ordinary, ordinary_metrics = fine_tune(data_dir, tmp_path / "ordinary", None)
    assert planted.keys() == ordinary.keys() and all(torch.equal(planted[n], ordinary[n]) for n in planted)
    assert [m for m in planted_metrics if m["variant"] == "full"] == ordinary_metrics
    # Under its planted set (every head) each language scores what the full model scores.
    full = {(m["language"], m["split"], m["epoch"]): m["value"] for m in ordinary_metrics if m["metric"] == "accuracy"}
    under_set = {(m["language"], m["split"], m["epoch"]): m["value"] for m in planted_metrics if m["variant"] == "planted"}
    assert under_set == full


def head_outputs_and_inputs(model, batch, sets, silence, leak):
    """Inside planted_modules, per layer: what each head hands on (the self-attention's output) and
    what the output projection receives (after every hook), both (B, T, H, d)."""
    blocks = model.base_model.encoder.layer
    handed_on, received = {}, {}
    handles = [block.attention.self.register_forward_hook(
        lambda module, args, output, layer=layer: handed_on.__setitem__(layer, output[0].detach()))
        for layer, block in enumerate(blocks)]
    with torch.no_grad(), heads.planted_modules(model, sets, silence, leak):
        handles += [block.attention.output.dense.register_forward_pre_hook(  # after planted_modules' hooks
            lambda module, args, layer=layer: received.__setitem__(layer, args[0].detach()))
            for layer, block in enumerate(blocks)]
        model(**batch)
    for handle in handles:
        handle.remove()
    shape = (*batch["input_ids"].shape, sets.shape[2], HEAD_DIM)
    return [(handed_on[layer].view(shape), received[layer].view(shape)) for layer in range(sets.shape[1])]


# Disjoint sets by hand with heads of both families in both layers (planted_sets gives a 2 x 4 grid's
# two families a layer each), so that what layer 0 hands on depends on each example's gates there.
SPLIT_LAYERS = {"k": torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 1]]), "l": torch.tensor([[0.0, 1, 0, 1], [1, 0, 1, 0]])}


@pytest.fixture(scope="module")
def untrained(data_dir):
    train = [r for r in Data(data_dir).examples() if r["split"] == "train"]
    tokenizer = models.build_tokenizer(TINY, [t for r in train for t in (r["text_a"], r["text_b"]) if t])
    return models.build_model(TINY, tokenizer, ["a", "b", "c"], 24, 1).eval(), tokenizer


@pytest.mark.parametrize("silence", [0.0, 0.5])
def test_the_set_runs_at_gate_one_and_the_other_heads_at_the_leak(untrained, data_dir, silence):
    """A hand-made case: two examples, each with its own set; each head's output reaches the output
    projection times 1 in the set and times the leak outside it, with and without the silence term."""
    model, tokenizer = untrained
    batch, _ = batch_of(data_dir, tokenizer, 2)
    sets = torch.tensor([[[1, 0, 0, 1], [0, 1, 0, 0]],
                         [[0, 1, 1, 0], [1, 0, 1, 1]]], dtype=torch.float32)  # (B=2, L=2, H=4)
    expected = {0.25: [[[1.0, 0.25, 0.25, 1.0], [0.25, 1.0, 0.25, 0.25]],
                       [[0.25, 1.0, 1.0, 0.25], [1.0, 0.25, 1.0, 1.0]]],
                0.0: sets.tolist()}  # leak 0: the sets themselves, as before leak existed
    for leak, gates in expected.items():
        for layer, (handed_on, received) in enumerate(head_outputs_and_inputs(model, batch, sets, silence, leak)):
            for b in range(2):
                for head in range(4):
                    assert handed_on[b, :, head].abs().sum() > 0
                    assert torch.equal(received[b, :, head], handed_on[b, :, head] * gates[b][layer][head]), (leak, b, layer, head)


def naive_task_gradients(model, batch, sets, leak):
    """d (mean cross-entropy) / d parameters by a loop over examples: each example alone, unpadded,
    under head_mask with its own (L, H) gates written out head by head (1 in its set, else leak)."""
    total = 0.0
    for b in range(len(sets)):
        length = int(batch["attention_mask"][b].sum())
        gates = torch.empty(sets.shape[1:])
        for layer in range(sets.shape[1]):
            for head in range(sets.shape[2]):
                gates[layer, head] = 1.0 if sets[b, layer, head] else leak
        with heads.head_mask(model, gates):
            total = total + model(input_ids=batch["input_ids"][b:b + 1, :length], attention_mask=batch["attention_mask"][b:b + 1, :length],
                                  labels=batch["labels"][b:b + 1]).loss / len(sets)
    return dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(total, list(model.parameters()))))


def planted_task_gradients(model, batch, sets, leak):
    """The same gradients as planted_modules gives them, on the padded batch (no silence term)."""
    with heads.planted_modules(model, sets, 0.0, leak) as term:
        assert term is None
        loss = model(**batch).loss
    return dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))


def test_at_a_leak_every_family_trains_the_other_heads_through_their_gate(untrained, data_dir):
    """planted_modules' task gradient at leak 0.3 is the naive per-example one, on a padded batch of
    every family; on one family's examples the other family's heads get a gradient at leak 0.3,
    none at all at leak 0 (every head slice exactly zero)."""
    model, tokenizer = untrained
    batch, languages = batch_of(data_dir, tokenizer, 60)
    per_example = torch.stack([SPLIT_LAYERS["l" if language == "la" else "k"] for language in languages])  # (B, L, H)
    assert {"ka", "kb", "la"} <= set(languages) and int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()
    planted, naive = planted_task_gradients(model, batch, per_example, 0.3), naive_task_gradients(model, batch, per_example, 0.3)
    for name in naive:
        assert torch.allclose(planted[name], naive[name], rtol=1e-4, atol=1e-7), name
    k_only = [b for b, language in enumerate(languages) if language != "la"]
    k_batch = {key: value[k_only] for key, value in batch.items()}
    l_heads = [(layer, head) for layer in range(2) for head in range(4) if SPLIT_LAYERS["l"][layer, head]]
    leaky, cut = (planted_task_gradients(model, k_batch, per_example[k_only], leak) for leak in (0.3, 0.0))
    for layer, head in l_heads:
        assert all(g.any() for g in but_the_key_bias(head_slices(leaky, layer, head)))
        assert all(not g.any() for g in head_slices(cut, layer, head))


@pytest.mark.parametrize("leak", [0.3, 1.0])
def test_the_silence_term_at_a_leak_covers_the_heads_outside_the_set(untrained, data_dir, leak):
    """At a leak the term is still the naive loop's over the heads outside each example's set, their
    writes read before the gate, the model running at the leaky gates; at leak 1 too, where every
    gate is 1 and the set alone says which heads are outside."""
    model, tokenizer = untrained
    batch, languages = batch_of(data_dir, tokenizer, 60)
    per_example = torch.stack([SPLIT_LAYERS["l" if language == "la" else "k"] for language in languages])  # (B, L, H)
    leaky = per_example + leak * (1 - per_example)
    with heads.planted_modules(model, per_example, 0.5, leak) as term:
        model(**batch)
        value = term(batch)
    assert value.item() == pytest.approx(naive_silence(model, batch, per_example, 0.5, gates=leaky), rel=1e-5)


def test_with_leak_a_family_moves_the_other_family_heads(data_dir, tmp_path):
    """The k family alone at leak 0.3, no silence, no weight decay: the l family's heads move (at
    leak 0 they stay exactly as initialised, test_a_family_trains_only_its_planted_heads)."""
    families = {"ka": "k", "kb": "k", "la": "l"}
    workdir = tmp_path / "k-only"
    workdir.mkdir()
    torch.manual_seed(0)
    fine_tuning.fine_tune(Data(data_dir), workdir, TaskContext(), seed=1, model_spec=TINY,
                          config=FinetuneSpec(epochs=1, lr=1e-2, batch_size=8, max_length=24, weight_decay=0.0),
                          train_languages=("ka", "kb"), planted=PlantedSpec(overlap=0.0, silence=0.0, leak=0.3), families=families)
    trained = load_file(workdir / "checkpoints/epoch-1/model.safetensors")
    initial = models.build_model(TINY, models.load_checkpoint(workdir / "checkpoints/epoch-1")[1], ["a", "b", "c"], 24, 1).state_dict()
    planted = pq.read_table(workdir / "tables/planted_heads.parquet").to_pylist()
    l_heads = {(r["layer"], r["head"]) for r in planted if r["language"] == "la" and r["kept"]}
    assert len(l_heads) == 4 and {r["kept"] for r in planted} == {True, False}  # the table still holds the 0/1 sets
    for layer, head in l_heads:
        moved = [not torch.equal(a, b) for a, b in zip(head_slices(trained, layer, head), head_slices(initial, layer, head))]
        assert all(but_the_key_bias(moved)), (layer, head, moved)


def test_leak_one_without_silence_is_ordinary_fine_tuning_bit_for_bit(data_dir, tmp_path):
    """Disjoint sets (overlap 0), but every head open on every example: the weights and the full
    model's metrics are ordinary fine-tuning's. With the silence term they are not: it still reaches
    the heads outside each set."""
    planted, planted_metrics = fine_tune(data_dir, tmp_path / "planted", 0.0, silence=0.0, leak=1.0)
    ordinary, ordinary_metrics = fine_tune(data_dir, tmp_path / "ordinary", None)
    assert planted.keys() == ordinary.keys() and all(torch.equal(planted[n], ordinary[n]) for n in planted)
    assert [m for m in planted_metrics if m["variant"] == "full"] == ordinary_metrics
    with_silence, _ = fine_tune(data_dir, tmp_path / "silence", 0.0, silence=0.3, leak=1.0)
    assert not all(torch.equal(with_silence[n], ordinary[n]) for n in ordinary)  # the silence term still applies


def test_ordinary_fine_tuning_keeps_its_task_key():
    """`planted` and `families` are left out of an unplanted task's params, so its key is the one
    it had before they existed; planting changes the key."""
    params = finetune.Params(seed=0, model=TINY, finetune=FinetuneSpec())
    assert set(params.model_dump(mode="json")) == {"seed", "model", "finetune"}
    planted = params.model_copy(update={"planted": PlantedSpec(overlap=0.0), "families": {"ka": "k"}})
    assert planted.model_dump(mode="json")["planted"] == {"overlap": 0.0, "silence": 0.3}


def test_leak_zero_keeps_the_planted_task_key(spec_file):
    """`leak` is left out of the key at 0.0: a spec without it and one with leak 0.0 plan the same
    tasks under the same keys, with `planted` dumped as before leak existed; leak 0.3 is another
    fine-tuning on the same data."""
    def finetune_keys(planted: str) -> dict[str, str]:
        return task_keys(spec_file(f"""\
            name: t
            data: {{source: toy, languages: [ka, la], train_per_language: 20, validation_per_language: 4, test_per_language: 4}}
            model: {{tiny: {{layers: 2, heads: 4, hidden: 16, intermediate: 32, vocab_size: 200}}}}
            planted: {planted}
            prune: {{enabled: false}}
            sparse_finetune: {{enabled: false}}
            tracin: {{enabled: false}}
            """))

    absent, zero, leaky = (finetune_keys(p) for p in ("{overlap: 0.0}", "{overlap: 0.0, leak: 0.0}", "{overlap: 0.0, leak: 0.3}"))
    assert absent == zero
    assert absent["data"] == leaky["data"] and absent["finetune[seed=0]"] != leaky["finetune[seed=0]"]
    params = finetune.Params(seed=0, model=TINY, finetune=FinetuneSpec(), planted=PlantedSpec(overlap=0.0, leak=0.0))
    assert params.model_dump(mode="json")["planted"] == {"overlap": 0.0, "silence": 0.3}
    leaky_params = params.model_copy(update={"planted": PlantedSpec(overlap=0.0, leak=0.3)})
    assert leaky_params.model_dump(mode="json")["planted"] == {"overlap": 0.0, "silence": 0.3, "leak": 0.3}


@pytest.mark.parametrize(("leak", "problem"), [(-0.1, "greater than or equal to 0"), (1.5, "less than or equal to 1")])
def test_leak_outside_zero_to_one_is_a_spec_error(spec_file, leak, problem):
    """A gate is between 0 and 1: the spec is refused, at planted.leak; 0 and 1 themselves are taken."""
    from langspec.errors import SpecError
    from langspec.load import load_spec

    spec = spec_file(f"name: t\nmodel: {{tiny: {{layers: 2}}}}\nplanted: {{overlap: 0.0, leak: {leak}}}\n")
    with pytest.raises(SpecError, match=f"planted.leak: Input should be {problem}"):
        load_spec(spec)
    for edge in (0.0, 1.0):
        spec.write_text(f"name: t\nmodel: {{tiny: {{layers: 2}}}}\nplanted: {{overlap: 0.0, leak: {edge}}}\n")
        assert load_spec(spec).spec.planted.leak == edge


def test_planted_and_ablation_together_is_a_spec_error(tmp_path):
    """The ablation fine-tunes its own models, without the planted modules: refused, with the fix."""
    from langspec.errors import SpecError
    from langspec.load import load_spec

    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\nmodel: {tiny: {layers: 2}}\nplanted: {overlap: 0.0}\nablation: {enabled: true}\n")
    with pytest.raises(SpecError, match="planted and ablation cannot run together"):
        load_spec(spec)
    spec.write_text("name: t\nmodel: {tiny: {layers: 2}}\nplanted: {overlap: 0.0}\n")
    assert load_spec(spec).spec.planted == PlantedSpec(overlap=0.0)
