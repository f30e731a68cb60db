"""SMS, MMS and calls through RingCentral: the client, the stand-in-tested webhook and syncs (docs/sms-calls.md)."""
