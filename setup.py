"""Only what setup.cfg cannot say: the native xnor-popcount extension (see ops/native/)."""
from setuptools import setup

setup()
