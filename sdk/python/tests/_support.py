"""Puts the SDK's source on sys.path, so the tests run from a checkout
without building or installing the package."""

import os
import sys

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)
