"""A language's subnetwork outside langspec: `langspec export` writes one subnetwork.json per seed and
language (its head mask and the checkpoints it goes with), and `apply_head_mask` makes a plain
Hugging Face model run as that subnetwork.

Masking a head h of layer l means zeroing its slice of the input of that layer's attention output
projection (runners/heads.py); zeroing the projection's weight columns of that slice instead is
the same computation, and leaves an ordinary model that `save_pretrained` and `pipeline` take as it is.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from store.queries import internal_rows



def export_subnetworks(con: duckdb.DuckDBPyConnection, store_root: Path, out: Path, run_id: int, point: str) -> list[Path]:
    """Write out/seed-<seed>/<language>/subnetwork.json for every subnetwork of one run and point."""
    written = []
    for row in internal_rows(con, "export_subnetworks", run_id=run_id, point=point):
        heads = row["heads"]
        document = {
            "language": row["language"],
            "seed": row["seed"],
            "head_mask": [row["kept"][layer * heads:(layer + 1) * heads] for layer in range(row["layers"])],  # [layer][head]: 1 kept
            "checkpoints": {  # the mask goes with the fine-tuned model (subnetwork) and with the SFT model (sft)
                "subnetwork": str((store_root / row["subnetwork_checkpoint"]).resolve()),
                "sft": str((store_root / row["sft_checkpoint"]).resolve()) if row["sft_checkpoint"] else None,
            },
            "test_accuracy": {"subnetwork": row["subnetwork_accuracy"], "sft": row["sft_accuracy"]},
            "run_id": run_id,
            "point": point,
            "prune_task": row["prune_task"],
        }
        path = out / f"seed-{row['seed']}" / row["language"] / "subnetwork.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=1))
        written.append(path)
    return written


def apply_head_mask(model, head_mask):
    """Make `model` (a Hugging Face XLM-R/BERT-style classifier) run as the subnetwork `head_mask`
    ([layer][head], 1 kept, 0 masked: subnetwork.json's head_mask): the masked heads' columns of
    each layer's attention output projection become zero. In place; returns the model."""
    import torch

    from runners.methods.heads import attention_output_projections, head_grid

    mask = torch.as_tensor(head_mask, dtype=torch.bool)  # (L, H)
    layers, heads = head_grid(model)
    if tuple(mask.shape) != (layers, heads):
        raise ValueError(f"head mask has shape {tuple(mask.shape)}, the model has {layers} layers x {heads} heads")
    with torch.no_grad():
        for layer, projection in enumerate(attention_output_projections(model)):
            weight = projection.weight.view(projection.out_features, heads, -1)  # (hidden, H, head_dim)
            weight[:, ~mask[layer], :] = 0
    return model
