"""Loading specs: every problem located as file:line:col with its field path, all at once."""

from __future__ import annotations

import json
import time

import pytest

from langspec.errors import SpecError
from langspec.load import MAX_SPEC_DEPTH, MAX_SPEC_NODES, MAX_SWEEP_POINTS, load_spec

GOOD = "name: t\nmodel:\n  tiny: {layers: 2}\nfinetune:\n  epochs: 2\n"


def problems(path, overrides=()) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec(path, overrides)
    return [str(p) for p in caught.value.problems]


def test_good_spec_and_defaults(spec_file):
    loaded = load_spec(spec_file(GOOD))
    assert loaded.spec.finetune.epochs == 2
    assert loaded.spec.finetune.lr == 2e-5  # the documented default
    assert len(loaded.points) == 1


def test_unknown_key_is_located_with_did_you_mean(spec_file):
    path = spec_file("name: t\nmodel: {tiny: {layers: 2}}\nfinetune:\n  epoch: 2\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4:3: finetune.epoch: unknown key 'epoch'; did you mean 'epochs'?")


def test_unknown_top_level_key(spec_file):
    [problem] = problems(spec_file(GOOD + "seed: [1]\n"))
    assert ":6:1: seed: unknown key 'seed'; did you mean 'seeds'?" in problem


def test_all_problems_reported_at_once(spec_file):
    path = spec_file("""\
        name: t
        model: {tiny: {layers: 2, hidden: 30}}
        finetune: {epochs: -1, lr: abc}
        data: {languages: [ka, ka]}
    """)
    found = problems(path)
    assert len(found) == 4, found
    assert any(":2:" in p and "divisible by heads" in p for p in found)
    assert any(":3:" in p and "finetune.epochs" in p and "greater than or equal to 1" in p and "got -1" in p for p in found)
    assert any(":3:" in p and "finetune.lr" in p and "'abc'" in p for p in found)
    assert any(":4:" in p and "languages are listed twice" in p for p in found)


def test_missing_required_field_points_at_its_parent(spec_file):
    [problem] = problems(spec_file("name: t\nfinetune: {epochs: 2}\n"))
    assert "model: required field is missing (The model to fine-tune.)" in problem


def test_empty_file(spec_file):
    [problem] = problems(spec_file(""))
    assert "the spec is empty" in problem


def test_invalid_yaml_is_located(spec_file):
    path = spec_file("name: t\nmodel: {tiny: {layers: 2}\nfinetune: [\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:3:") and "invalid YAML" in problem


def test_list_where_mapping_expected(spec_file):
    [problem] = problems(spec_file("name: t\nmodel: [tiny]\n"))
    assert ":2:1: model:" in problem and "valid dictionary" in problem and "got ['tiny']" in problem


def test_top_level_not_a_mapping(spec_file):
    [problem] = problems(spec_file("- name: t\n"))
    assert "a spec is a mapping of sections" in problem


def test_duplicate_key(spec_file):
    [problem] = problems(spec_file(GOOD + "finetune: {epochs: 3}\n"))
    assert ":6:1: finetune: key given twice" in problem


def test_missing_file(tmp_path):
    [problem] = problems(tmp_path / "nope.yaml")
    assert "spec file not found" in problem


def test_overrides_are_applied_and_validated(spec_file):
    path = spec_file(GOOD)
    loaded = load_spec(path, ["finetune.epochs=4", "data.languages=[ka, mi]"])
    assert loaded.spec.finetune.epochs == 4 and loaded.spec.data.languages == ["ka", "mi"]
    [problem] = problems(path, ["finetune.epochs=0"])
    assert problem.startswith("--set finetune.epochs: finetune.epochs:") and "greater than or equal to 1" in problem
    [problem] = problems(path, ["finetune.lrr=3"])
    assert "unknown field 'lrr'; did you mean 'lr'?" in problem
    [problem] = problems(path, ["finetune.epochs"])
    assert "an override is path=value" in problem


def test_sweep_expands_every_combination(spec_file):
    loaded = load_spec(spec_file(GOOD + "sweep:\n  finetune.lr: [1.0e-4, 2.0e-4]\n  prune.threshold: [0.9, 0.95, 0.98]\n"))
    assert len(loaded.points) == 6
    combos = {(p.spec.finetune.lr, p.spec.prune.threshold) for p in loaded.points}
    assert combos == {(lr, t) for lr in (1e-4, 2e-4) for t in (0.9, 0.95, 0.98)}
    assert all(p.spec.sweep == {} for p in loaded.points)


def test_sweep_key_and_value_errors_are_located(spec_file):
    found = problems(spec_file(GOOD + "sweep:\n  prune.treshold: [0.9]\n"))
    assert found == [f"{found[0].split(':')[0]}:7:3: sweep.prune.treshold: unknown field 'treshold'; did you mean 'threshold'? "
                     "(allowed: enabled, threshold, step, split, normalize_per_layer, normalize_global, max_examples, batch_size, keep_one_head_per_layer)"]
    [problem] = problems(spec_file(GOOD + "sweep:\n  prune.threshold: [0.9, 1.5]\n", name="b.yaml"))
    assert ":7:3:" in problem and "prune.threshold=1.5" in problem and "less than or equal to 1" in problem
    # The analyses read one point's k at a time from the run's spec: k is a query parameter, not swept.
    [problem] = problems(spec_file(GOOD + "sweep:\n  analysis.top_k: [5, 10]\n", name="c.yaml"))
    assert ":7:3: sweep.analysis.top_k: analysis settings change no task" in problem and "--param k=20" in problem


def test_extends_merges_a_base_and_locates_errors_in_either_file(spec_file):
    spec_file("""\
        data: {source: toy, languages: [ka, la], train_per_language: 50}
        model: {tiny: {layers: 2, heads: 2, hidden: 16}}
        finetune: {epochs: 3, lr: -1.0}
        seeds: [0, 1, 2]
        """, name="base.yaml")
    path = spec_file("""\
        extends: base.yaml
        name: child
        data: {languages: [ka, kb]}
        finetune: {epochs: 0}
        """, name="child.yaml")
    found = problems(path)
    base, child = str(path.parent / "base.yaml"), str(path)
    assert found == [f"{base}:3:23: finetune.lr: Input should be greater than 0 (got -1.0)",
                     f"{child}:4:12: finetune.epochs: Input should be greater than or equal to 1 (got 0)"]
    spec_file("extends: base.yaml\nname: child\nfinetune: {lr: 0.001}\ndata: {languages: [ka, kb]}\n", name="ok.yaml")
    loaded = load_spec(path.parent / "ok.yaml")
    assert loaded.spec.data.languages == ["ka", "kb"]  # lists replace
    assert loaded.spec.data.train_per_language == 50  # mappings merge
    assert (loaded.spec.finetune.epochs, loaded.spec.finetune.lr, loaded.spec.seeds) == (3, 0.001, [0, 1, 2])


def test_extends_errors(spec_file):
    path = spec_file("extends: nowhere.yaml\nname: x\n")
    assert "base spec nowhere.yaml not found" in problems(path)[0]
    spec_file("extends: b.yaml\nname: a\n", name="a.yaml")
    spec_file("extends: a.yaml\n", name="b.yaml")
    assert "extends itself" in problems(path.parent / "a.yaml")[0]


def test_a_bad_override_hides_no_other_problem(spec_file):
    found = problems(spec_file(GOOD), ["finetune.lrr=1", "finetune.lr=abc", "seeds=[0, 0]"])
    assert len(found) == 3
    assert any(p.startswith("--set finetune.lrr=1: finetune.lrr: unknown field 'lrr'; did you mean 'lr'?") for p in found)
    assert any(p.startswith("--set finetune.lr: finetune.lr:") and "'abc'" in p for p in found)
    assert any(p.startswith("--set seeds: seeds:") and "listed twice" in p for p in found)


def test_a_bad_override_hides_no_sweep_problem(spec_file):
    path = spec_file(GOOD + "sweep: {prune.treshold: [0.9]}\n")
    found = problems(path, ["finetune.epochz=1"])
    assert [p.split(":")[0] for p in found] == ["--set finetune.epochz=1", str(path)]
    assert "did you mean 'threshold'" in found[1]


# --- a spec file cannot be turned against its user ---------------------------------------------


def alias_bomb(levels: int) -> str:
    """`levels` lists of ten, each repeating the one before: 441 bytes that expand to 10**levels entries at 9."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        name, before = "abcdefghi"[level], "abcdefghi"[level - 1]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{before}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_before_it_expands(spec_file):
    path = spec_file(alias_bomb(9))
    start = time.perf_counter()
    [problem] = problems(path)
    assert time.perf_counter() - start < 1.0
    assert problem.startswith(f"{path}:1:") and f"expands to more than {MAX_SPEC_NODES} entries" in problem
    assert "write the values out or use fewer aliases" in problem
    # A YAML merge key expands the same way: through the walk, before PyYAML merges anything.
    merges = "a: &a {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1, k9: 1}\n" + "".join(
        f"{name}: &{name} {{<<: [{', '.join([f'*{before}'] * 10)}]}}\n" for before, name in zip("abcdefgh", "bcdefghi"))
    assert "expands to more than" in problems(spec_file(merges, name="merges.yaml"))[0]


def test_anchor_and_alias_used_once_still_load(spec_file):
    loaded = load_spec(spec_file("name: t\nmodel: {tiny: {layers: 2}}\nseeds: &s [0, 1]\nsweep: {data.seed: *s}\n"))
    assert [p.spec.data.seed for p in loaded.points] == [0, 1]
    three_levels = problems(spec_file(alias_bomb(3), name="b.yaml"))  # 1,110 entries: bad keys, but within the bound
    assert len(three_levels) == 5 and not any("expands" in p for p in three_levels)
    assert "expands to more than" in problems(spec_file(alias_bomb(4), name="c.yaml"))[0]  # 11,110 entries


def test_deep_nesting_is_refused(spec_file):
    for depth in (MAX_SPEC_DEPTH + 1, 3000):  # 3000: PyYAML's recursive composer ran out of Python's stack
        path = spec_file("a: " + "[" * depth + "]" * depth + "\n", name=f"deep{depth}.yaml")
        [problem] = problems(path)
        assert problem == f"{path}:1:{4 + MAX_SPEC_DEPTH}: the spec is nested more than {MAX_SPEC_DEPTH} levels deep; " \
                          "a spec's sections nest a few levels (an alias *name inside its own anchor &name nests without end)"
    at_the_bound = problems(spec_file(GOOD + "a: " + "[" * MAX_SPEC_DEPTH + "]" * MAX_SPEC_DEPTH + "\n", name="ok.yaml"))
    assert len(at_the_bound) == 1 and "unknown key 'a'" in at_the_bound[0]
    [problem] = problems(spec_file("name: t\nloop: &loop [*loop]\n", name="loop.yaml"))  # an alias inside its own anchor
    assert ":2:7: loop: the spec is nested more than" in problem


def test_yaml_that_python_cannot_hold_is_a_spec_error(spec_file):
    [problem] = problems(spec_file("name: t\n? [a, b]\n: 1\n"))
    assert ":2:3: a key is a name, not a list or mapping" in problem
    [problem] = problems(spec_file("name: !!python/object/apply:os.system [echo hi]\n", name="tag.yaml"))
    assert ":1:7: invalid YAML: could not determine a constructor" in problem


@pytest.mark.parametrize("code", ["../../../escaped", "/abs/x", 'ka"; touch x', "ka\n", "-rf", "x" * 65])
def test_language_codes_are_plain_words(spec_file, code):
    path = spec_file(GOOD + f"data: {{source: files, path: /data, languages: [en, {json.dumps(code)}]}}\n")
    [problem] = problems(path)
    assert f":6:36: data.languages: not a language code: {code!r};" in problem
    assert "[A-Za-z0-9][A-Za-z0-9_-]{0,63}" in problem


def test_large_sweep_is_refused_unless_allowed(spec_file):
    six_by_ten = "".join(f"  {key}: [{', '.join(str(v) for v in range(1, 11))}]\n" for key in (
        "finetune.epochs", "finetune.batch_size", "finetune.max_length", "data.seed", "prune.step", "prune.max_examples"))
    path = spec_file(GOOD + "sweep:\n" + six_by_ten)
    start = time.perf_counter()
    [problem] = problems(path)
    assert time.perf_counter() - start < 1.0
    assert problem == f"{path}:6:1: sweep: the sweep has 1000000 points, more than {MAX_SWEEP_POINTS}; " \
                      "sweep fewer values, or pass --yes to run it anyway"
    allowed = spec_file(GOOD + "sweep:\n" + six_by_ten[: six_by_ten.index("  finetune.max_length")], name="b.yaml")
    assert len(load_spec(allowed).points) == 100  # within the limit: expanded as before
    with_yes = spec_file(GOOD + "sweep: {data.seed: [%s]}\n" % ", ".join(map(str, range(1001))), name="c.yaml")
    assert "1001 points" in problems(with_yes)[0]
    assert len(load_spec(with_yes, allow_large_sweep=True).points) == 1001
