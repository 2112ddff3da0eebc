"""A well-formed service-account key for tests (a fresh RSA key, never valid at Google): Google's
credentials classes accept it without reaching the network."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def service_account_info(project: str = "studio-analytics") -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {"type": "service_account", "project_id": project, "private_key_id": "test",
            "private_key": pem.decode(), "client_email": f"flows@{project}.iam.gserviceaccount.com",
            "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}


def save_credentials_block(name: str = "test-gcp") -> str:
    """Save a GcpCredentials block holding that key; return its name."""
    from prefect_gcp import GcpCredentials

    GcpCredentials(service_account_info=service_account_info(), project="studio-analytics").save(name, overwrite=True)
    return name
