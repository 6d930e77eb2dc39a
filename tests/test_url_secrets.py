"""What counts as a secret in a URL the DPO saves, and what the audit trail keeps of one."""

import pytest

from requests_app.url_secrets import carries_secret, masked


@pytest.mark.parametrize("url", [
    "https://hooks:s3cret@portal.example.com/hooks",
    "https://ghp_S3cr3t@portal.example.com/hooks",  # a token sent as the Basic user name
    "https://:s3cret@portal.example.com/hooks",
    "postgresql://app:s3cret@db/billing",
])
def test_user_info_that_may_be_a_credential_is_a_secret(url):
    assert carries_secret(url)


@pytest.mark.parametrize("url", ["https://portal.example.com/hooks", "postgresql://app@db/billing"])
def test_an_address_without_a_credential_is_no_secret(url):
    """A database URL's user name names an account; its password comes from the environment."""
    assert not carries_secret(url)


@pytest.mark.parametrize(("url", "kept"), [
    ("https://ghp_S3cr3t@portal.example.com/hooks", "https://…@portal.example.com/hooks"),
    ("https://hooks:s3cret@portal.example.com/hooks?region=eu", "https://…:…@portal.example.com/hooks?region=…"),
    ("https://a@b@portal.example.com/ana@example.com", "https://…@portal.example.com/ana@example.com"),
    ("postgresql://app:s3cret@db/billing", "postgresql://app:…@db/billing"),
])
def test_the_trail_keeps_no_user_info_of_a_web_address(url, kept):
    assert masked(url) == kept
