"""The TT-SNN co-design kit as one package: ``ttsnn.sw``, ``ttsnn.gen``, ``ttsnn.cosim``, ``ttsnn.model``.

Every module of the kit imports the others as ``ttsnn.<package>...``, so that an installed kit
adds one top-level name, ``ttsnn``, to an environment and cannot clash with the many projects
that install a ``model`` or ``gen`` package (README, "Installing"; docs/cli.md).

- An installed wheel has the four packages inside this one (``site-packages/ttsnn/sw``, ...):
  pyproject.toml/setup.py map ``ttsnn.sw`` to the checkout's ``sw/`` folder when building.
- In a checkout the four packages stay top-level folders (``sw/``, ``gen/``, ...). This file then
  adds the checkout's root to this package's search path, so ``import ttsnn.sw.train`` finds
  ``sw/train.py``; ``python -m sw ...`` keeps working from the checkout's root. The editable
  install (``make venv``) maps the same names to the same folders.
"""

from pathlib import Path as _Path

_HERE = _Path(__file__).resolve().parent
if not (_HERE / "sw" / "__init__.py").is_file() and (_HERE.parent / "sw" / "__init__.py").is_file():
    # a checkout: ttsnn.sw is <root>/sw (only the kit's four packages are ever imported this way)
    __path__.append(str(_HERE.parent))  # noqa: F821 - a package's __path__
del _Path
