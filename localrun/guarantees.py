"""When the instance acknowledges an input, per processing guarantee (docs/pulsar-functions.md §2.2).

Kept apart from the I/O so each row of the ack table is testable on its own:

| guarantee     | autoAck | ack                                                         |
|---------------|---------|-------------------------------------------------------------|
| ATMOST_ONCE   | true    | on receipt, before process(); a later failure loses it      |
| ATLEAST_ONCE  | true    | after the output send succeeds, or right after process()    |
|               |         | when there is no output value / no output topic             |
| ATLEAST_ONCE  | false   | never automatically (the function calls context.ack)        |
| MANUAL        | any     | never automatically                                         |

Every failure (user exception, serde error, failed send) is a negative ack, whatever the
guarantee; for ATMOST_ONCE it has no effect because the message was already acked.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.function_config import Guarantee


@dataclass(frozen=True)
class AckPolicy:
    guarantee: Guarantee
    auto_ack: bool

    @property
    def ack_on_receipt(self) -> bool:
        return self.guarantee == "ATMOST_ONCE" and self.auto_ack

    @property
    def ack_after_send(self) -> bool:
        """Ack in the output producer's callback once the send is Ok."""
        return self.guarantee == "ATLEAST_ONCE" and self.auto_ack

    @property
    def ack_without_output(self) -> bool:
        """Ack right after process() when nothing is sent to the output topic."""
        return self.guarantee == "ATLEAST_ONCE" and self.auto_ack
