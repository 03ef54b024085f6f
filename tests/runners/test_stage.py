"""The Stage contract (runners.stage): every stage in the registry defines it, and what it declares
matches the spec and what it writes."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from langspec.spec import Spec
from runners.stage import STAGES, Upstream, stage
from store.task_rows import TASK_TABLES


def spec_field(path: str):
    """The field a dotted spec path names, or None."""
    model, info = Spec, None
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        inner = [a for a in (info.annotation, *getattr(info.annotation, "__args__", ())) if isinstance(a, type)]
        model = next((a for a in inner if issubclass(a, BaseModel)), None)
    return info


@pytest.mark.parametrize("name", STAGES)
def test_every_stage_defines_the_contract(name):
    module = stage(name)
    assert isinstance(module.VERSION, int) and isinstance(module.RESUMABLE, bool)
    assert issubclass(module.Params, BaseModel) and module.Params.model_config.get("frozen")
    for attr in ("check", "tasks", "run"):
        assert callable(getattr(module, attr)), attr


@pytest.mark.parametrize("name", STAGES)
def test_memory_fields_name_fields_of_the_spec(name):
    missing = [path for path in stage(name).MEMORY_FIELDS if spec_field(path) is None]
    assert not missing, f"{name}.MEMORY_FIELDS names fields the spec does not have: {missing}"


@pytest.mark.parametrize("name", STAGES)
def test_sections_are_assembled_into_the_spec_and_read(name):
    module = stage(name)
    for section, (model, _) in module.SECTIONS.items():
        assert Spec.model_fields[section].annotation is model
        assert section in module.READS
    assert set(module.READS) <= set(Spec.model_fields)
    assert name in Spec.model_fields["resources"].annotation.model_fields  # resources.<stage> overrides


def test_every_section_of_the_spec_has_one_owner():
    owned = [section for name in STAGES for section in stage(name).SECTIONS]
    assert len(owned) == len(set(owned))
    assert set(Spec.model_fields) - set(owned) == {"name", "seeds", "analysis", "resources", "sweep"}


@pytest.mark.parametrize("name", STAGES)
def test_declared_tables_are_store_tables(name):
    assert set(stage(name).TABLES) <= set(TASK_TABLES)


@pytest.mark.parametrize("name, directory", [("data", "data"), ("finetune", "finetune"), ("prune", "prune.ka"), ("sparse_finetune", "sft")])
def test_a_stage_writes_the_tables_it_declares(study, name, directory):
    written = {path.stem for path in (study.dirs[directory] / "tables").glob("*.parquet")}
    assert written == set(stage(name).TABLES)


def test_an_unknown_stage_is_refused():
    with pytest.raises(KeyError, match="no stage 'distill'; the stages are data, finetune"):
        stage("distill")


def test_upstream_finds_one_task_by_labels():
    upstream = Upstream()
    upstream.add("prune", {"seed": 0, "language": "ka"}, "k0")
    upstream.add("prune", {"seed": 0, "language": "la"}, "k1")
    upstream.add("prune", {"seed": 1, "language": "ka"}, "k2")
    assert upstream.key("prune", seed=1, language="ka") == "k2"
    assert [key for _, key in upstream.keys("prune", seed=0)] == ["k0", "k1"]
    with pytest.raises(LookupError, match="2 prune tasks with labels {'language': 'ka'}"):
        upstream.key("prune", language="ka")
    with pytest.raises(LookupError, match="0 finetune tasks"):
        upstream.key("finetune", seed=0)
