"""edgewise: make deep networks fit edge devices, with costs that are measured."""

__version__ = "0.1.0"
