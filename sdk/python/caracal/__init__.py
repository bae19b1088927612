"""Python SDK for Caracal: the admin and metering API of `caracal serve`,
and offline verification of its Merkle proofs.

    from caracal import Client
    client = Client("http://127.0.0.1:8090", "crk_…")
    with client.spend("tool:search", amount="0.01"):
        search("caracal")
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    AgentSuspended, BudgetExceeded, CaracalError, Conflict, Denied, Forbidden, InvalidRequest,
    MethodNotAllowed, NotFound, RequestTooLarge, TransportError, Unauthorized, Unavailable,
)
from .models import (  # noqa: E402
    Agent, AgentDetail, APIKey, Budget, Checkpoint, CheckpointInfo, CreatedKey, Delegation, Event,
    EventPage, ImportResult, MerkleStatus, PerUnit, Policy, PriceRule, Remaining, Reservation,
    SigningKey, SummaryRow, Tokens,
)
from .metering import AsyncSpend, Spend  # noqa: E402
from .client import Client  # noqa: E402
from .merkle import (  # noqa: E402
    ConsistencyResult, InclusionResult, Leaf, SignatureUnavailable, VerificationError, VerifierKey,
    decode_leaf, verify_consistency, verify_inclusion,
)

__all__ = [
    "Client", "Spend", "AsyncSpend",
    "CaracalError", "BudgetExceeded", "Denied", "InvalidRequest", "Unauthorized", "Forbidden",
    "AgentSuspended", "NotFound", "MethodNotAllowed", "Conflict", "RequestTooLarge", "Unavailable",
    "TransportError",
    "Agent", "AgentDetail", "APIKey", "CreatedKey", "Policy", "Delegation", "PriceRule", "PerUnit",
    "ImportResult", "Budget", "Remaining", "Tokens", "Event", "EventPage", "SummaryRow",
    "MerkleStatus", "CheckpointInfo", "Checkpoint", "SigningKey", "Reservation",
    "verify_inclusion", "verify_consistency", "decode_leaf", "Leaf", "VerifierKey",
    "InclusionResult", "ConsistencyResult", "VerificationError", "SignatureUnavailable",
]
