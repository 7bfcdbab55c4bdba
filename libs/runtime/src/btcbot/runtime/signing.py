"""Per-run signing keys (for `btcbot up` and tests): risk's key, the operator's key, and who gets which.

Each process is handed only the keys it needs: execution verifies with risk's key alone (an operator key cannot
place orders), risk signs with its own and verifies the operator's, the ledger verifies the operator's, the CLI
signs with the operator's. Strategy and marketdata get none.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from btcbot.contracts.signing import Signer, format_keys

OPERATOR_KEY_ID_ENV = "BTCBOT_OPERATOR_SIGNING_KEY_ID"
OPERATOR_KEY_ENV = "BTCBOT_OPERATOR_SIGNING_KEY"


def _b64(secret: bytes) -> str:
    return base64.b64encode(secret).decode()


@dataclass(frozen=True, repr=False)
class RunKeys:
    """Risk's and the operator's signing keys of one run."""

    risk_key_id: str
    risk_secret: bytes
    operator_key_id: str
    operator_secret: bytes

    @classmethod
    def generate(cls) -> RunKeys:
        """Fresh random keys (32 bytes each) with random key ids."""
        tag = secrets.token_hex(4)
        return cls(f"risk-{tag}", secrets.token_bytes(32), f"operator-{tag}", secrets.token_bytes(32))

    def risk_signer(self) -> Signer:
        """Risk's signing key."""
        return Signer(self.risk_key_id, self.risk_secret)

    def operator_signer(self) -> Signer:
        """The operator's signing key."""
        return Signer(self.operator_key_id, self.operator_secret)

    def service_env(self, service: str) -> dict[str, str]:
        """The signing variables of one service (empty for services that neither sign nor verify)."""
        risk = format_keys({self.risk_key_id: self.risk_secret})
        operator = format_keys({self.operator_key_id: self.operator_secret})
        if service == "risk":
            return {
                "BTCBOT_SIGNING_KEY_ID": self.risk_key_id,
                "BTCBOT_SIGNING_KEY": _b64(self.risk_secret),
                "BTCBOT_SIGNING_KEYS": operator,
            }
        if service == "execution":
            return {"BTCBOT_SIGNING_KEYS": risk}
        if service == "ledger":
            return {"BTCBOT_SIGNING_KEYS": operator}
        return {}

    def operator_env(self) -> dict[str, str]:
        """The CLI's signing variables (`btcbot control`)."""
        return {OPERATOR_KEY_ID_ENV: self.operator_key_id, OPERATOR_KEY_ENV: _b64(self.operator_secret)}

    def all_env(self) -> dict[str, str]:
        """Every variable at once, for tests that give all services one environment (execution then trusts the
        operator's key too: fine in a test, never in a deployment)."""
        return {
            **self.service_env("risk"),
            "BTCBOT_SIGNING_KEYS": format_keys(
                {self.risk_key_id: self.risk_secret, self.operator_key_id: self.operator_secret}
            ),
            **self.operator_env(),
        }

    def __repr__(self) -> str:
        return f"RunKeys(risk_key_id={self.risk_key_id!r}, operator_key_id={self.operator_key_id!r})"
