"""The ARR client: protocol, transport, and the account-wide pacing and polling they share."""
