"""Test helpers; imported by test modules, so pytest rewrites their asserts too."""

import pytest

pytest.register_assert_rewrite("tests.helpers.realpool", "tests.helpers.waiting",
                               "tests.helpers.x11")
