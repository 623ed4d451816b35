"""Plots are written as valid PNG files of a sensible size."""

import struct

from edgewise.report import bar_plot, line_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_line_plot_writes_a_png(tmp_path):
    path = line_plot(
        tmp_path / "plots" / "acc.png",
        {"train": ([1, 2, 3], [0.5, 0.7, 0.8]), "val": ([1, 2, 3], [0.4, 0.6, 0.7])},
        xlabel="epoch",
        ylabel="accuracy",
        title="accuracy",
    )
    data = path.read_bytes()
    assert png_size(data) == (768, 480)  # 6.4 x 4.0 inches at 120 dpi
    assert data.endswith(b"IEND\xaeB`\x82")


def test_bar_plot_writes_a_png(tmp_path):
    path = bar_plot(
        tmp_path / "macs.png", {"resnet": 12.5, "convnet": 3.0}, ylabel="MMACs", title="cost"
    )
    assert png_size(path.read_bytes()) == (768, 480)
