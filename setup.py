# setup.py only points cffi at the build scripts; everything else is in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["kernels/_build.py:ffibuilder", "rtengine/native/_runner_build.py:ffibuilder"])
