"""The seat rules S1..S19 and invariants I1..I6, in plain Python: no gRPC here."""
