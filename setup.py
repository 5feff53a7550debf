"""The package layout of the wheel; everything else is in pyproject.toml.

The checkout keeps its four top-level folders (sw/, gen/, cosim/, model/); the wheel installs them
inside one package, ``ttsnn`` (``site-packages/ttsnn/sw``, ...), so that installing the kit adds
no top-level ``model`` or ``gen`` that could clash with another project's (README, "Installing").
``package_dir`` maps ``ttsnn.sw`` to ``sw/`` and so on; ``ttsnn/__init__.py`` makes the same
names resolve in a checkout.

configs/*.toml ship inside the wheel as ``ttsnn/gen/configs`` (package data of ``ttsnn.gen``),
so that ``load_config("paper")`` works from an installed package. configs/ stays a top-level
folder of the checkout (no package), so setuptools' package-data cannot name it; this step copies
it at build time. An editable install reads configs/ in place.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

KIT_PACKAGES = ("sw", "gen", "cosim", "model")
ROOT = Path(__file__).resolve().parent


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "ttsnn" / "gen" / "configs"
        self.mkpath(str(dest))
        for toml in sorted(ROOT.joinpath("configs").glob("*.toml")):
            self.copy_file(str(toml), str(dest / toml.name))


def _packages() -> list[str]:
    found = find_packages(where=str(ROOT), include=[f"{p}*" for p in KIT_PACKAGES])
    return ["ttsnn"] + [f"ttsnn.{name}" for name in sorted(found)]


setup(
    packages=_packages(),
    package_dir={"ttsnn": "ttsnn", **{f"ttsnn.{p}": p for p in KIT_PACKAGES}},
    cmdclass={"build_py": BuildPyWithConfigs},
)
