"""Test doubles and builders shared by the test suites (the HTTP model fake is tests/fake_openai.py)."""
