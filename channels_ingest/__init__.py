"""Adapters for outside channels (email/, ringcentral/, chat/).

Each adapter turns a vendor payload into one inbound message and calls
inbox.services.receive_message; replies leave through the adapter's sender.
"""
