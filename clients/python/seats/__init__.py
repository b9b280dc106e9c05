"""Client side of the seat service: the generated seats.v1 modules live in ``seats.v1``."""
