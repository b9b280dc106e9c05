"""The seat service: servicers -> domain -> store."""
