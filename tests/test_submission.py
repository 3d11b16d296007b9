"""Collecting uploads: every expected file classified; junk ignored; folder-in-zip flattened."""

import zipfile
from pathlib import Path

import pytest

from grader.errors import SubmissionError
from grader.submission import FileStatus, collect

KNN = "def hello():\n    print('hi')\n"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_loose_files_and_statuses(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_text(KNN)
    (up / "linear_classifier.py").write_text("")  # empty
    (up / "optimizers.py").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")  # unreadable
    (up / "notes.txt").write_text("extra")
    sub = collect(up, assignment, tmp_path / "work")
    assert sub.status("knn.py") is FileStatus.PRESENT
    assert sub.status("linear_classifier.py") is FileStatus.EMPTY
    assert sub.status("optimizers.py") is FileStatus.UNREADABLE
    assert sub.status("knn.ipynb") is FileStatus.MISSING
    assert sub.status("svm_best_model.pt") is FileStatus.MISSING
    assert sub.extras == ["notes.txt"]
    assert "not UTF-8" in sub.files["optimizers.py"].problem()
    assert "empty" in sub.files["linear_classifier.py"].problem()
    assert "not found" in sub.files["knn.ipynb"].problem()


def test_whitespace_only_file_is_empty(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_text("\n\n   \n")
    assert collect(up, assignment, tmp_path / "w").status("knn.py") is FileStatus.EMPTY


def test_bom_and_crlf_are_normalised(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_bytes(b"\xef\xbb\xbfdef hello():\r\n    return '\xc3\xa9t\xc3\xa9'\r\n")
    sub = collect(up, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.PRESENT
    assert sub.text("knn.py") == "def hello():\n    return 'été'\n"


def test_macos_starter_zip_layout(tmp_path, assignment):
    """The course's own starter zip: a folder inside, __MACOSX/._knn.py, .DS_Store."""
    z = make_zip(tmp_path / "P1.zip", {
        "P1/knn.py": KNN.encode(),
        "P1/.DS_Store": b"\x00\x00\x00\x01Bud1",
        "__MACOSX/P1/._knn.py": b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ",
        "P1/._linear_classifier.py": b"\x00\x05\x16\x07binary",
        "P1/__pycache__/knn.cpython-311.pyc": b"\x00\x01",
    })
    sub = collect(z, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.PRESENT
    assert sub.files["knn.py"].source == "P1/knn.py"
    # the AppleDouble file under a .py name is junk, not an unreadable linear_classifier.py
    assert sub.status("linear_classifier.py") is FileStatus.MISSING
    assert sub.extras == []
    assert any("__MACOSX" in i for i in sub.ignored) and any(".DS_Store" in i for i in sub.ignored)


def test_folder_holding_one_zip_is_unpacked(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    make_zip(up / "submission.zip", {"knn.py": KNN.encode()})
    assert collect(up, assignment, tmp_path / "w").status("knn.py") is FileStatus.PRESENT


def test_top_level_wins_over_nested_copy(tmp_path, assignment):
    up = tmp_path / "up"
    (up / "old").mkdir(parents=True)
    (up / "knn.py").write_text(KNN)
    (up / "old" / "knn.py").write_text("x = 1\n")
    sub = collect(up, assignment, tmp_path / "w")
    assert sub.text("knn.py") == KNN
    assert "old/knn.py" in sub.extras


def test_zip_slip_members_are_never_written(tmp_path, assignment):
    z = make_zip(tmp_path / "evil.zip", {"../../escaped.py": b"x=1", "/abs.py": b"x=1", "knn.py": KNN.encode()})
    sub = collect(z, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.PRESENT
    assert not (tmp_path / "escaped.py").exists() and not Path("/abs.py").exists()


def test_corrupt_zip_is_a_submission_error(tmp_path, assignment):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(SubmissionError):
        collect(bad, assignment, tmp_path / "w")


def test_untouched_template_is_recognised(tmp_path, assignment, template_submission):
    sub = collect(template_submission, assignment, tmp_path / "w")
    assert sub.files["knn.py"].untouched
    (template_submission / "knn.py").write_text(sub.text("knn.py") + "\nx = 1\n")
    assert not collect(template_submission, assignment, tmp_path / "w2").files["knn.py"].untouched
