"""Where datasets are looked for, and reading bytes that may be gzipped."""

import gzip

import pytest

from edgewise.data.files import candidate_dirs, find_file, read_bytes, require_dir
from edgewise.errors import DataError


def test_an_explicit_root_is_the_only_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEWISE_DATA", "/elsewhere")
    assert candidate_dirs(tmp_path, ["mnist"], ["/usr/share/x"]) == [tmp_path, tmp_path / "mnist"]


def test_without_root_the_environment_then_the_system(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEWISE_DATA", str(tmp_path))
    dirs = candidate_dirs(None, ["mnist"], ["/usr/share/x"])
    assert [str(d) for d in dirs] == [str(tmp_path / "mnist"), str(tmp_path), "/usr/share/x"]
    monkeypatch.delenv("EDGEWISE_DATA")
    assert [str(d) for d in candidate_dirs(None, ["mnist"], ["/usr/share/x"])] == ["/usr/share/x"]


def test_require_dir_finds_the_first_holding_a_file_or_says_where_it_looked(tmp_path, monkeypatch):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.gz").write_bytes(b"")
    dirs = [tmp_path / "a", tmp_path / "b"]
    assert require_dir("toy", dirs, ["f", "f.gz"], "hint.") == tmp_path / "b"
    with pytest.raises(
        DataError, match=rf"toy not found: looked for g in {tmp_path / 'a'}, .* hint\.$"
    ):
        require_dir("toy", dirs, ["g"], "hint.")
    with pytest.raises(DataError, match=r"no root was given and \$EDGEWISE_DATA is not set"):
        require_dir("toy", [], ["g"], "hint.")


def test_find_file_prefers_the_first_spelling_and_names_the_missing_one(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"")
    assert find_file(tmp_path, ["x", "x.gz"]) == tmp_path / "x.gz"
    with pytest.raises(DataError, match=r"missing file .*/y \(or y.gz\)\.$"):
        find_file(tmp_path, ["y", "y.gz"])


def test_read_bytes_gunzips_by_magic_not_by_name(tmp_path):
    (tmp_path / "plain").write_bytes(b"abc")
    (tmp_path / "zipped").write_bytes(gzip.compress(b"abc"))
    assert read_bytes(tmp_path / "plain") == read_bytes(tmp_path / "zipped") == b"abc"


def test_corrupt_gzip_and_unreadable_files_are_data_errors(tmp_path):
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"not deflate data")
    with pytest.raises(DataError, match="bad.gz is a corrupt or truncated gzip file"):
        read_bytes(tmp_path / "bad.gz")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="cannot read .*folder"):
        read_bytes(tmp_path / "folder")
