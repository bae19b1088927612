"""Puts the SDK's source on sys.path, so the tests run from a checkout
without building or installing the package."""

import os
import sys

SDK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "testdata")
if SDK_DIR not in sys.path:
    sys.path.insert(0, SDK_DIR)


def have_cryptography():
    try:
        import cryptography.hazmat.primitives.asymmetric.ed25519  # noqa: F401
        return True
    except ImportError:
        return False


def needs_cryptography(test):
    """Marks a test that checks Ed25519 signatures.

    Without the `cryptography` package it is skipped, with the reason
    shown, unless CARACAL_REQUIRE_CRYPTOGRAPHY is set (make test-python
    sets it, so CI cannot pass without checking signatures): then it fails.
    """
    import functools
    import unittest

    if have_cryptography():
        return test
    if os.environ.get("CARACAL_REQUIRE_CRYPTOGRAPHY"):
        @functools.wraps(test)
        def fail(self, *a, **kw):
            self.fail("the cryptography package is missing (Debian: apt-get install python3-cryptography) "
                      "and CARACAL_REQUIRE_CRYPTOGRAPHY is set")
        return fail
    return unittest.skip("needs the cryptography package (Debian: python3-cryptography); "
                         "set CARACAL_REQUIRE_CRYPTOGRAPHY=1 to fail instead")(test)
