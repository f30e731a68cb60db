"""The email channel: IMAP in, SendGrid (or SMTP) out through Django's mail
backend, SendGrid tracking and inbound webhooks, transactional mail, campaigns.

Every inbound path (IMAP poll, SendGrid Inbound Parse) goes through
``ingest.store_email(raw_bytes)``: one parser, one threading rule, one dedupe key.
"""
