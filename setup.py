"""Ships configs/*.toml inside the wheel as ``gen/configs`` (package data of ``gen``), so that
``load_config("paper")`` works from an installed package; everything else is in pyproject.toml.

configs/ stays a top-level folder of the checkout (no package), so setuptools' package-data
cannot name it; this step copies it at build time. An editable install reads configs/ in place.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        dest = Path(self.build_lib) / "gen" / "configs"
        self.mkpath(str(dest))
        for toml in sorted(Path(__file__).resolve().parent.joinpath("configs").glob("*.toml")):
            self.copy_file(str(toml), str(dest / toml.name))


setup(cmdclass={"build_py": BuildPyWithConfigs})
