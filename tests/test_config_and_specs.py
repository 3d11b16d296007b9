"""grader.yaml and test_specs/ validation: errors name the file and the key."""

import shutil
from pathlib import Path

import pytest
import yaml

from grader.config import load_config
from grader.errors import ConfigError, SpecError
from grader.specs import load_specs


def write_assignment(tmp_path: Path, repo: Path, config_patch=None, spec_text: str | None = None) -> Path:
    root = tmp_path / "assign"
    root.mkdir()
    cfg = yaml.safe_load((repo / "grader.yaml").read_text())
    if config_patch:
        config_patch(cfg)
    (root / "grader.yaml").write_text(yaml.safe_dump(cfg))
    (root / "test_specs").mkdir()
    if spec_text is not None:
        (root / "test_specs" / "s.yaml").write_text(spec_text)
    shutil.copytree(repo / "reference", root / "reference")
    return root / "grader.yaml"


def test_shipped_config_and_specs_load(assignment):
    planned = load_specs(assignment)
    assert planned, "no checks"
    numbers = [p.number for p in planned]
    assert len(set(numbers)) == len(numbers)
    assert {f.name for f in assignment.config.files} == {
        "knn.py", "knn.ipynb", "linear_classifier.py", "linear_classifier.ipynb",
        "svm_best_model.pt", "softmax_best_model.pt", "optimizers.py"}


def test_unknown_config_key_names_file_and_key(tmp_path, repo):
    path = write_assignment(tmp_path, repo, lambda c: c["limits"].update(check_timout=3))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "grader.yaml: limits.check_timout: Extra inputs are not permitted" in str(e.value)


def test_wrong_type_in_config(tmp_path, repo):
    path = write_assignment(tmp_path, repo, lambda c: c["limits"].update(check_timeout="soon"))
    with pytest.raises(ConfigError, match=r"limits\.check_timeout"):
        load_config(path)


def test_yaml_syntax_error_has_line(tmp_path):
    p = tmp_path / "grader.yaml"
    p.write_text("title: x\nfiles: [\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(p)


SPEC_OK = """
file: knn.py
checks:
  - id: a
    name: A
    kind: value
    function: predict_labels
    points: 1
    cases:
      - args: {dists: {rand: [3, 2]}, y_train: {randint: [0, 2], shape: [3]}}
"""


def test_spec_errors_name_file_check_and_key(tmp_path, repo):
    bad = SPEC_OK.replace("{rand: [3, 2]}", "{rand: [3, 2], dtyp: float64}")
    path = write_assignment(tmp_path, repo, spec_text=bad)
    with pytest.raises(SpecError) as e:
        load_specs(load_config(path))
    msg = str(e.value)
    assert "s.yaml" in msg and "checks[0] (id a)" in msg and "dtyp" in msg


def test_unknown_kind_and_unknown_file(tmp_path, repo):
    path = write_assignment(tmp_path, repo, spec_text=SPEC_OK.replace("kind: value", "kind: vale"))
    with pytest.raises(SpecError, match="unknown check kind 'vale'"):
        load_specs(load_config(path))
    shutil.rmtree(tmp_path / "assign")
    path = write_assignment(tmp_path, repo, spec_text=SPEC_OK.replace("file: knn.py", "file: knnn.py"))
    with pytest.raises(SpecError, match="not in grader.yaml's file list"):
        load_specs(load_config(path))


def test_duplicate_ids_and_points_total(tmp_path, repo):
    dup = SPEC_OK + SPEC_OK.split("checks:\n", 1)[1]
    path = write_assignment(tmp_path, repo, spec_text=dup)
    with pytest.raises(SpecError, match="duplicate check id 'a'"):
        load_specs(load_config(path))
    shutil.rmtree(tmp_path / "assign")
    path = write_assignment(tmp_path, repo, lambda c: c.update(total_points=5), spec_text=SPEC_OK)
    with pytest.raises(SpecError, match="total_points: is 5 but the specs add up to 1"):
        load_specs(load_config(path))


def test_requires_must_name_an_existing_check(tmp_path, repo):
    path = write_assignment(tmp_path, repo, spec_text=SPEC_OK.replace("    points: 1\n", "    points: 1\n    requires: [nope]\n"))
    with pytest.raises(SpecError, match="requires: no check 'nope'"):
        load_specs(load_config(path))


def test_constraint_checks_earn_nothing_until_their_value_check_passes(assignment):
    """A stub trivially has no loops; its 'no loops' check must not give points."""
    ids = {p.spec.id: p.spec for p in load_specs(assignment) if p.file == "knn.py"}
    for sid in ("two_loops_source", "one_loop_source", "no_loops_source"):
        assert ids[sid].requires, sid
