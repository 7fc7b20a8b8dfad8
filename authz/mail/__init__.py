"""Mail: invitation messages, the outbox they wait in, and the sender that delivers them over SMTP."""
