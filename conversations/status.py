"""How statuses order: a late 'sent' never overwrites 'delivered'."""

from __future__ import annotations

from conversations.models import MessageStatus

_RANK = {
    MessageStatus.ACCEPTED: 0,
    MessageStatus.QUEUED: 1,
    MessageStatus.SENDING: 2,
    MessageStatus.SENT: 3,
    MessageStatus.DELIVERED: 4,
    MessageStatus.UNDELIVERED: 4,
    MessageStatus.FAILED: 4,
    MessageStatus.READ: 5,
    MessageStatus.RECEIVED: 5,
}


def advances(current: MessageStatus, new: MessageStatus) -> bool:
    """True when ``new`` should replace ``current`` as a message's status."""
    return _RANK[new] > _RANK[current]
