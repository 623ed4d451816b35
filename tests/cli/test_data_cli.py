"""`edgewise data list` and `edgewise data show`, run in-process through `run_app`."""

import pytest

from edgewise.cli import run_app
from edgewise.data import list_datasets


def test_data_list_names_every_dataset_and_where_it_is(capsys, monkeypatch):
    monkeypatch.delenv("EDGEWISE_DATA", raising=False)
    assert run_app(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_datasets():
        assert name in out
    assert "scikit-learn" in out and "not found" in out  # digits is bundled; mnist needs a root


def test_data_show_prints_split_sizes_and_class_counts(capsys):
    assert run_app(["data", "show", "digits"]) == 0
    out = capsys.readouterr().out
    # 1,797 digits: 359 drawn for test, then 144 of the other 1,438 for validation
    for expected in ("1294", "144", "359", "1 x 8 x 8"):
        assert expected in out
    assert "images per class" in out


def test_data_show_of_a_missing_folder_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        run_app(["data", "show", "mnist", "--root", "/nonexistent"])
    assert info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mnist not found")
    assert "/nonexistent" in lines[0] and "Traceback" not in captured.err


def test_data_show_of_an_unknown_name_suggests_one(capsys):
    with pytest.raises(SystemExit) as info:
        run_app(["data", "show", "fashion"])
    assert info.value.code == 2
    assert "Did you mean 'fashion-mnist'" in capsys.readouterr().err
