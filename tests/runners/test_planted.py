"""Fine-tuning with planted language modules (`planted.overlap`): the head sets are laid out as
documented, a language's examples train only its family's heads (checked on the weights themselves),
the silence term is what a naive loop over examples, heads and tokens gives and does silence the
other heads, overlap 1 is ordinary fine-tuning bit for bit, and ordinary fine-tuning keeps its key."""

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


def fine_tune(data_dir, workdir, overlap, silence=0.3, **config):
    families = {"ka": "k", "kb": "k", "la": "l"}
    params = finetune.Params(
        seed=1, model=TINY, finetune=FinetuneSpec(epochs=2, lr=1e-2, batch_size=8, max_length=24, **config),
        **({"planted": PlantedSpec(overlap=overlap, silence=silence), "families": families} if overlap is not None else {}),
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


def naive_silence(model, batch, gates, silence):
    """The silence term by loops: each head's output is read where the self-attention hands it on
    (before any gate), written through its columns of the output projection one token at a time."""
    outputs = {}
    blocks = model.base_model.encoder.layer
    handles = [block.attention.self.register_forward_hook(
        lambda module, args, output, layer=layer: outputs.__setitem__(layer, output[0].detach()))
        for layer, block in enumerate(blocks)]
    with torch.no_grad(), heads.head_mask(model, gates):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for handle in handles:
        handle.remove()
    total, pairs = 0.0, 0
    for b in range(len(gates)):
        length = int(batch["attention_mask"][b].sum())
        for layer, block in enumerate(blocks):
            weight = block.attention.output.dense.weight.detach()
            for head in range(gates.shape[-1]):
                if gates[b, layer, head]:
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
    with heads.planted_modules(model, gates, 0.5) as term:
        loss = model(**batch).loss
        value = term(batch)
    with heads.head_mask(model, gates):
        assert torch.equal(model(**batch).loss, loss)
    assert value.item() == pytest.approx(naive_silence(model, batch, gates, 0.5), rel=1e-5)
    with heads.planted_modules(model, torch.ones_like(gates), 0.5) as term:
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


def test_ordinary_fine_tuning_keeps_its_task_key():
    """`planted` and `families` are left out of an unplanted task's params, so its key is the one
    it had before they existed; planting changes the key."""
    params = finetune.Params(seed=0, model=TINY, finetune=FinetuneSpec())
    assert set(params.model_dump(mode="json")) == {"seed", "model", "finetune"}
    planted = params.model_copy(update={"planted": PlantedSpec(overlap=0.0), "families": {"ka": "k"}})
    assert planted.model_dump(mode="json")["planted"] == {"overlap": 0.0, "silence": 0.3}


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
