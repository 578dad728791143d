"""Build the cffi extension physmem._native; everything else is in pyproject.toml."""
from setuptools import setup

setup(cffi_modules=["csrc/ffi_build.py:ffi"])
