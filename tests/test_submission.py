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


# --------------------------------------------------------------------------- encodings

LATIN1_BODY = "def hello():\n    return 'caf\u00e9 cr\u00e8me'\n"


def test_latin1_file_with_coding_declaration_is_read_and_staged_as_utf8(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_bytes(("# -*- coding: latin-1 -*-\n" + LATIN1_BODY).encode("latin-1"))
    sub = collect(up, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.PRESENT
    # the staged copy is UTF-8, so its declaration now says so (same line numbers)
    assert sub.text("knn.py") == "# -*- coding: utf-8 -*-\n" + LATIN1_BODY
    assert any("latin-1" in n or "iso-8859-1" in n for n in sub.files["knn.py"].notes)
    # Python reads the staged file exactly as the student's file: same string values
    ns: dict = {}
    exec(compile((sub.root / "knn.py").read_bytes(), "knn.py", "exec"), ns)
    assert ns["hello"]() == "caf\u00e9 cr\u00e8me"


def test_coding_declaration_on_line_two_and_cp1252(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_bytes(b"#!/usr/bin/env python\r\n# vim: set fileencoding=cp1252 :\r\nx = '\x80 5'\r\n")
    sub = collect(up, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.PRESENT
    assert sub.text("knn.py") == "#!/usr/bin/env python\n# vim: set fileencoding=utf-8 :\nx = '\u20ac 5'\n"


def test_latin1_file_without_declaration_says_where_and_how_to_fix(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    data = ("import torch\n\n" + LATIN1_BODY).encode("latin-1")
    (up / "knn.py").write_bytes(data)
    sub = collect(up, assignment, tmp_path / "w")
    assert sub.status("knn.py") is FileStatus.UNREADABLE
    msg = sub.files["knn.py"].problem()
    offset = data.index(b"\xe9")
    assert msg.startswith("knn.py could not be read: it is not valid UTF-8")
    assert "line 4" in msg and f"byte offset {offset}" in msg and "0xE9" in msg
    assert "'é'" in msg and "save the file as utf-8" in msg.lower()
    assert "binary" not in msg  # no guessed reason


def test_file_invalid_in_its_declared_encoding_names_the_place(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    data = "# coding: ascii\nx = 1\ny = 'é'\n".encode("utf-8")
    (up / "knn.py").write_bytes(data)
    msg = collect(up, assignment, tmp_path / "w").files["knn.py"].problem()
    assert "not valid ascii" in msg and "coding declaration" in msg
    offset = data.index(b"\xc3")
    assert "line 3" in msg and f"byte offset {offset}" in msg and "0xC3" in msg
    assert "valid UTF-8" in msg  # the declaration, not the file, is wrong


def test_unknown_declared_encoding_and_crlf_line_counting(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.py").write_bytes(b"# -*- coding: klingon -*-\nx = 1\n")
    (up / "optimizers.py").write_bytes(b"a = 1\r\nb = 2\r\nc = '\xff'\r\n")
    sub = collect(up, assignment, tmp_path / "w")
    msg = sub.files["knn.py"].problem()
    assert "line 1 declares the encoding 'klingon'" in msg and "UTF-8" in msg
    msg = sub.files["optimizers.py"].problem()
    assert "line 3, column 6 (byte offset 19" in msg and "0xFF" in msg


def test_notebook_is_utf8_json_and_not_read_through_a_declaration(tmp_path, assignment):
    up = tmp_path / "up"
    up.mkdir()
    (up / "knn.ipynb").write_bytes(b'{"cells": [],\n "x": "\xe9"}')
    msg = collect(up, assignment, tmp_path / "w").files["knn.ipynb"].problem()
    assert "not valid UTF-8" in msg and "line 2" in msg and "0xE9" in msg


def _zip_with_damage(dest: Path, how: str) -> Path:
    """A one-member zip of knn.py, then damaged the way real uploads are."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("knn.py", (KNN * 20).encode())
    raw = bytearray(dest.read_bytes())
    name_len, extra_len = int.from_bytes(raw[26:28], "little"), int.from_bytes(raw[28:30], "little")
    data_start = 30 + name_len + extra_len
    central = raw.rfind(b"PK\x01\x02")
    if how == "flipped bytes":
        for i in range(data_start + 5, data_start + 25):
            raw[i] ^= 0xFF
    elif how == "encrypted":
        for at in (6, central + 8):  # general-purpose flag bit 0, local and central headers
            raw[at] |= 0x01
    elif how == "unknown method":
        for at in (8, central + 10):  # compression method 99 (AES), local and central headers
            raw[at:at + 2] = (99).to_bytes(2, "little")
    dest.write_bytes(bytes(raw))
    return dest


@pytest.mark.parametrize("how, says", [("flipped bytes", "is damaged"), ("encrypted", "password-protected"),
                                       ("unknown method", "compression method")])
def test_zips_that_cannot_be_unpacked_are_unreadable_uploads_not_internal_errors(tmp_path, assignment, how, says):
    bad = _zip_with_damage(tmp_path / "bad.zip", how)
    with pytest.raises(SubmissionError, match=says):
        collect(bad, assignment, tmp_path / "w")
