"""neuromix: intelligent music mixing and neural sound design.

Subpackages: :mod:`neuromix.core` (differentiable audio core),
:mod:`neuromix.mixing` (mixing head), :mod:`neuromix.synthesis` (generative
head), :mod:`neuromix.ui` (CLI and browser workbench).
"""

__version__ = "0.1.0"
