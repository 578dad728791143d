"""Build the cffi extension physmem._native; everything else is in pyproject.toml."""
from setuptools import setup

setup(
    cffi_modules=["csrc/ffi_build.py:ffi"],
    # cffi builds against CPython's stable ABI (physmem/_native.abi3.so): one wheel per
    # architecture serves every Python from 3.10 on.
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
