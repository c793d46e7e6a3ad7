"""Only what pyproject.toml cannot say: the top-level conf/ (where the design card puts it) travels inside the wheel
as the package data ``m3bert/conf``, so an installed m3bert runs from any folder (see m3bert.common.configs)."""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["m3bert", "m3bert.*"]), "m3bert.conf"], package_dir={"m3bert.conf": "conf"})
