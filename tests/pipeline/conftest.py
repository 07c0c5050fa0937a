"""Pipeline tests run offline: placeholder AWS keys and region, no credentials files, and any
connection to anything but 127.0.0.1 is refused and fails the test, even when the code that
tried swallowed the error."""
import socket

import pytest

pytest.importorskip("sagemaker", reason="the [pipeline] extra (SageMaker SDK) is not installed")

LOCAL = ("127.0.0.1", "localhost", "::1")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    attempts = []

    def refuse(address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in LOCAL:
            attempts.append(address)
            raise OSError(f"network access to {address!r} during an offline test")

    original_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return original_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    original_create = socket.create_connection

    def create_connection(address, *args, **kwargs):
        refuse(address)
        return original_create(address, *args, **kwargs)  # 127.0.0.1 is allowed

    monkeypatch.setattr(socket, "create_connection", create_connection)
    yield
    assert not attempts, f"the test tried to reach the network: {attempts}"
