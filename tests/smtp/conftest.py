"""Fixtures for the SMTP conversation tests (the daemon fixtures come from
tests/conftest.py)."""

import pytest

from fulmar_test import SMTPClient


@pytest.fixture
def client(fulmar):
    """A raw connection to the default daemon, greeting read."""
    c = SMTPClient(fulmar.port)
    yield c
    c.close()


@pytest.fixture
def session(client):
    """A raw connection after a successful EHLO client.test."""
    client.ehlo()
    return client
